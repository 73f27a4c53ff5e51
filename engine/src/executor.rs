//! A dedicated runtime for query execution.
//!
//! DataFusion's operators can compute for a long time without yielding (a join that emits
//! many rows from few inputs). On the runtime that serves connections that would starve the
//! timers and cancel requests of every client. Statements therefore execute here, and their
//! results travel to the connection through a bounded channel: when the connection drops the
//! channel (cancel, timeout, disconnect), the producing task stops at its next batch.

use std::future::Future;

use datafusion::arrow::array::RecordBatch;
use datafusion::dataframe::DataFrame;
use datafusion::error::{DataFusionError, Result};
use futures::{Stream, StreamExt};
use tokio::runtime::{Handle, Runtime};
use tokio_util::task::AbortOnDropHandle;

pub struct CpuExecutor {
    runtime: Option<Runtime>,
    handle: Handle,
}

impl CpuExecutor {
    pub fn new(threads: usize) -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .thread_name("flashsql-exec")
            .enable_all()
            .build()?;
        let handle = runtime.handle().clone();
        Ok(Self {
            runtime: Some(runtime),
            handle,
        })
    }

    /// Runs `fut` on the execution runtime; dropping the returned future aborts it.
    pub fn run<T: Send + 'static>(
        &self,
        fut: impl Future<Output = T> + Send + 'static,
    ) -> impl Future<Output = Result<T>> + Send + 'static {
        let task = AbortOnDropHandle::new(self.handle.spawn(fut));
        async move {
            task.await
                .map_err(|e| DataFusionError::Internal(format!("statement task failed: {e}")))
        }
    }

    /// Executes `df` on the execution runtime and streams its batches back. Dropping the
    /// stream stops the execution.
    pub fn stream(
        &self,
        df: DataFrame,
    ) -> impl Stream<Item = Result<RecordBatch>> + Send + 'static {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<RecordBatch>>(2);
        let task = AbortOnDropHandle::new(self.handle.spawn(async move {
            match df.execute_stream().await {
                Ok(mut s) => {
                    while let Some(b) = s.next().await {
                        if tx.send(b).await.is_err() {
                            break; // the reader is gone
                        }
                    }
                }
                Err(e) => {
                    let _ = tx.send(Err(e)).await;
                }
            }
        }));
        futures::stream::unfold((rx, task), |(mut rx, task)| async move {
            rx.recv().await.map(|b| (b, (rx, task)))
        })
    }
}

impl Drop for CpuExecutor {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}
