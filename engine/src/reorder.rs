//! `ALTER TABLE … SET (sort_by = …)`: a table's declared order changed after it was created
//! (see [`crate::sort_order`]).
//!
//! A table loaded before anyone knew how it would be read, or one whose readers changed,
//! gets its order without being recreated (and without losing its name, comment and the
//! views over it). The statement rewrites every row in the new order and declares it in one
//! commit: both are a transaction block's changes (the session's own block, or one opened
//! for the statement alone), so a concurrent write to the table makes it fail with 40001
//! instead of leaving unsorted rows under the declared order, and ROLLBACK undoes both.
//! An empty order (`sort_by = ''`, or `RESET (sort_by)`) only drops the declaration: the
//! files stay as they are.

use std::sync::Arc;

use datafusion::catalog::TableProvider;
use datafusion::execution::session_state::SessionState;

use crate::catalog_change::CatalogChange;
use crate::store::Store;
use crate::table::{Count, DurableTable};
use crate::transaction::Transaction;

/// Declares `keys` as the order of table `schema.name` in block `tx`, rewriting its rows in
/// that order. Declaring the order the table already has changes nothing.
pub async fn set_sort_order(
    state: &SessionState,
    store: &Arc<Store>,
    tx: &Arc<Transaction>,
    schema: &str,
    name: &str,
    keys: Vec<String>,
) -> datafusion::error::Result<()> {
    let m = tx.manifest();
    let Some(def) = m.table(schema, name).cloned() else {
        return Err(m.not_a_table(schema, name).into());
    };
    let columns = store.table_schema(def.id, &def.columns)?;
    crate::sort_order::check(&keys, &columns)?;
    if keys == def.sort_by {
        return Ok(());
    }
    tx.record(CatalogChange::SetSortOrder {
        schema: schema.to_string(),
        name: name.to_string(),
        sort_by: keys.clone(),
        expect_files: None,
    })?;
    if keys.is_empty() {
        return Ok(());
    }
    // Read under the order the files have now, written under the new one (the sink sorts).
    let reading = DurableTable::new(
        store.clone(),
        def.id,
        columns.clone(),
        Some(tx.clone()),
        &def.sort_by,
    );
    let (files, _) = reading.snapshot_files()?;
    let rows = reading.pinned(&files).scan(state, None, &[], None).await?;
    let writing = DurableTable::new(store.clone(), def.id, columns, Some(tx.clone()), &keys);
    let plan = writing.rewrite(rows, files, Count::Known(0))?;
    datafusion::physical_plan::collect(plan, state.task_ctx()).await?;
    Ok(())
}

/// [`set_sort_order`] as a statement of its own: in a block opened for it, committed when
/// the rewrite is written, rolled back (its files removed) when anything fails.
pub async fn set_sort_order_now(
    state: &SessionState,
    store: &Arc<Store>,
    schema: &str,
    name: &str,
    keys: Vec<String>,
) -> datafusion::error::Result<()> {
    let tx = Arc::new(Transaction::begin(store.clone()));
    match set_sort_order(state, store, &tx, schema, name, keys).await {
        Ok(()) => Ok(tx.commit()?),
        Err(e) => {
            tx.rollback();
            Err(e)
        }
    }
}
