//! A dedicated runtime for query execution.
//!
//! DataFusion's operators can compute for a long time without yielding (a join that emits
//! many rows from few inputs). On the runtime that serves connections that would starve the
//! timers and cancel requests of every client. Statements therefore execute here, and their
//! results travel to the connection through a bounded channel: when the connection drops the
//! channel (cancel, timeout, disconnect), the producing task stops at its next batch.
//! Every task carries its statement's [`Interrupt`], fired when the task is given up, so
//! that operators computing inside one poll stop too (see [`crate::interrupt`]).

use std::future::Future;

use datafusion::arrow::array::RecordBatch;
use datafusion::dataframe::DataFrame;
use datafusion::error::{DataFusionError, Result};
use futures::{Stream, StreamExt};
use tokio::runtime::{Handle, Runtime};
use tokio_util::task::AbortOnDropHandle;

use crate::interrupt::{Interrupt, InterruptOnDrop};

/// The stack of every thread that plans or executes statements (these and the connection
/// threads): enough for the deepest statement the server accepts (1,000 levels of nested
/// expressions) through DataFusion's recursive planning and evaluation, in a debug build,
/// with margin. Only the pages a thread touches are committed.
pub const THREAD_STACK_BYTES: usize = 256 << 20;

pub struct CpuExecutor {
    runtime: Option<Runtime>,
    handle: Handle,
}

impl CpuExecutor {
    pub fn new(threads: usize) -> std::io::Result<Self> {
        let runtime = tokio::runtime::Builder::new_multi_thread()
            .worker_threads(threads.max(1))
            .thread_name("flashsql-exec")
            .thread_stack_size(THREAD_STACK_BYTES)
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
        let interrupt = Interrupt::default();
        let mut given_up = InterruptOnDrop::new(interrupt.clone());
        let task = AbortOnDropHandle::new(self.handle.spawn(interrupt.scope(fut)));
        async move {
            let done = task
                .await
                .map_err(|e| DataFusionError::Internal(format!("statement task failed: {e}")));
            given_up.disarm();
            done
        }
    }

    /// Executes `df` on the execution runtime and streams its batches back. Dropping the
    /// stream stops the execution.
    pub fn stream(
        &self,
        df: DataFrame,
    ) -> impl Stream<Item = Result<RecordBatch>> + Send + 'static {
        let (tx, rx) = tokio::sync::mpsc::channel::<Result<RecordBatch>>(2);
        let interrupt = Interrupt::default();
        let given_up = InterruptOnDrop::new(interrupt.clone());
        let task = AbortOnDropHandle::new(self.handle.spawn(interrupt.scope(async move {
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
        })));
        // The producer's last word is how its task ended: a task that panicked ends the
        // stream with an error, never with a shortened result that looks complete.
        // Dropping the stream before its end interrupts the statement.
        futures::stream::unfold(
            (rx, Some(task), given_up),
            |(mut rx, task, mut given_up)| async move {
                match rx.recv().await {
                    Some(b) => Some((b, (rx, task, given_up))),
                    None => {
                        given_up.disarm();
                        match task?.await {
                            Ok(()) => None,
                            Err(e) => Some((
                                Err(DataFusionError::Internal(format!(
                                    "the statement failed while producing rows: {e}"
                                ))),
                                (rx, None, given_up),
                            )),
                        }
                    }
                }
            },
        )
    }
}

impl Drop for CpuExecutor {
    fn drop(&mut self) {
        if let Some(rt) = self.runtime.take() {
            rt.shutdown_background();
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::sync::atomic::{AtomicUsize, Ordering};

    use datafusion::arrow::array::{ArrayRef, Int64Array};
    use datafusion::arrow::datatypes::DataType;
    use datafusion::logical_expr::{ColumnarValue, Volatility, create_udf};
    use datafusion::prelude::SessionContext;
    use futures::StreamExt;

    use super::CpuExecutor;

    /// A function that panics in the middle of a result ends the stream with an error after
    /// the batches before it, so the client sees a failure, not a short result.
    #[tokio::test]
    async fn a_panic_mid_stream_ends_it_with_an_error() {
        let ctx = SessionContext::new_with_config(
            datafusion::prelude::SessionConfig::new().with_batch_size(10),
        );
        let calls = Arc::new(AtomicUsize::new(0));
        let seen = calls.clone();
        ctx.register_udf(create_udf(
            "boom_after_three",
            vec![DataType::Int64],
            DataType::Int64,
            Volatility::Volatile,
            Arc::new(move |args: &[ColumnarValue]| {
                if seen.fetch_add(1, Ordering::SeqCst) >= 3 {
                    panic!("boom");
                }
                let a: ArrayRef = match &args[0] {
                    ColumnarValue::Array(a) => a.clone(),
                    ColumnarValue::Scalar(s) => s.to_array()?,
                };
                Ok(ColumnarValue::Array(Arc::new(Int64Array::from(vec![
                    1;
                    a.len(
                    )
                ]))))
            }),
        ));
        let df = ctx
            .sql("SELECT boom_after_three(value) FROM generate_series(1, 1000)")
            .await
            .expect("plans");
        let executor = CpuExecutor::new(1).expect("runtime");
        let results: Vec<_> = executor.stream(df).collect().await;
        let oks = results.iter().filter(|r| r.is_ok()).count();
        assert!(oks >= 1, "batches before the panic arrive");
        assert!(
            results.last().is_some_and(|r| r.is_err()),
            "the stream ends with an error: {} batches, last ok: {:?}",
            results.len(),
            results.last().map(|r| r.is_ok())
        );
    }
}
