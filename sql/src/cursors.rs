//! Server-side cursors: `DECLARE name CURSOR FOR query`, `FETCH`, `CLOSE`.
//!
//! Drivers read large results in pieces through them (psycopg's named cursors, pgjdbc and
//! SQLAlchemy's streaming results). A cursor holds the query's running record-batch stream
//! and hands out the next rows on each FETCH, so a result larger than memory is read with
//! bounded memory. Cursors move forward only (PostgreSQL's `NO SCROLL`); one declared
//! `WITHOUT HOLD` (the default) closes at the end of the transaction, as in PostgreSQL.

use std::collections::HashMap;

use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::dataframe::DataFrame;
use datafusion::execution::SendableRecordBatchStream;
use datafusion::sql::sqlparser::ast::{FetchDirection, Value, ValueWithSpan};
use futures::StreamExt;
use tokio::sync::Mutex;

use crate::errors::SqlError;

struct Cursor {
    schema: SchemaRef,
    stream: SendableRecordBatchStream,
    /// Rows of the last batch not yet fetched.
    pending: Option<RecordBatch>,
    hold: bool,
    /// Declared inside the transaction block that is open now: a `ROLLBACK` closes it even
    /// `WITH HOLD`, as PostgreSQL does (it may read files the block wrote).
    in_block: bool,
}

/// How many rows a FETCH asks for: `None` for all that are left.
pub fn fetch_count(direction: &FetchDirection) -> Result<Option<usize>, SqlError> {
    let number = |v: &ValueWithSpan| -> Result<usize, SqlError> {
        match &v.value {
            Value::Number(n, _) => n
                .parse::<usize>()
                .map_err(|_| SqlError::syntax(format!("invalid FETCH count {n}"))),
            other => Err(SqlError::syntax(format!("invalid FETCH count {other}"))),
        }
    };
    match direction {
        FetchDirection::Next => Ok(Some(1)),
        FetchDirection::Count { limit } => number(limit).map(Some),
        FetchDirection::Forward { limit } => {
            limit.as_ref().map_or(Ok(Some(1)), |l| number(l).map(Some))
        }
        FetchDirection::All | FetchDirection::ForwardAll => Ok(None),
        other => Err(SqlError::not_supported(format!(
            "FETCH {other}: cursors move forward only (declare them NO SCROLL)"
        ))),
    }
}

/// A session's open cursors.
#[derive(Default)]
pub struct Cursors {
    open: Mutex<HashMap<String, Cursor>>,
}

impl Cursors {
    /// Opens `name` over `df`, which starts executing now; `in_block` when a transaction
    /// block is open.
    pub async fn declare(
        &self,
        name: &str,
        df: DataFrame,
        hold: bool,
        in_block: bool,
    ) -> Result<(), SqlError> {
        let mut open = self.open.lock().await;
        if open.contains_key(name) {
            return Err(SqlError::coded(
                "42P03",
                format!("cursor \"{name}\" already exists"),
            ));
        }
        let schema: SchemaRef = std::sync::Arc::new(df.schema().as_arrow().clone());
        let stream = df.execute_stream().await?;
        open.insert(
            name.to_string(),
            Cursor {
                schema,
                stream,
                pending: None,
                hold,
                in_block,
            },
        );
        Ok(())
    }

    /// The result columns of `name`, for describing a FETCH.
    pub async fn schema(&self, name: &str) -> Result<SchemaRef, SqlError> {
        let open = self.open.lock().await;
        open.get(name)
            .map(|c| c.schema.clone())
            .ok_or_else(|| missing(name))
    }

    /// The next `count` rows of `name` (all that are left for `None`).
    pub async fn fetch(
        &self,
        name: &str,
        count: Option<usize>,
    ) -> Result<(SchemaRef, Vec<RecordBatch>), SqlError> {
        let mut open = self.open.lock().await;
        let cursor = open.get_mut(name).ok_or_else(|| missing(name))?;
        let mut want = count.unwrap_or(usize::MAX);
        let mut out = Vec::new();
        while want > 0 {
            let batch = match cursor.pending.take() {
                Some(b) => b,
                None => match cursor.stream.next().await {
                    Some(b) => b?,
                    None => break,
                },
            };
            if batch.num_rows() > want {
                out.push(batch.slice(0, want));
                cursor.pending = Some(batch.slice(want, batch.num_rows() - want));
                want = 0;
            } else {
                want -= batch.num_rows();
                out.push(batch);
            }
        }
        Ok((cursor.schema.clone(), out))
    }

    /// Closes `name`, or every cursor for `None` (`CLOSE ALL`).
    pub async fn close(&self, name: Option<&str>) -> Result<(), SqlError> {
        let mut open = self.open.lock().await;
        match name {
            None => open.clear(),
            Some(n) => {
                open.remove(n).ok_or_else(|| missing(n))?;
            }
        }
        Ok(())
    }

    /// The transaction ended: cursors declared without `WITH HOLD` close, and so do those
    /// declared in a block that did not commit.
    pub async fn end_transaction(&self, committed: bool) {
        let mut open = self.open.lock().await;
        open.retain(|_, c| c.hold && (committed || !c.in_block));
        for c in open.values_mut() {
            c.in_block = false;
        }
    }
}

fn missing(name: &str) -> SqlError {
    SqlError::coded("34000", format!("cursor \"{name}\" does not exist"))
}
