//! How a session sees the catalog: the shared durable schemas, plus what belongs to the
//! session alone (its temporary tables, and system schemas such as `pg_catalog` that are
//! built per session).

use std::collections::HashMap;
use std::sync::{Arc, RwLock};

use async_trait::async_trait;
use datafusion::catalog::{CatalogProvider, MemorySchemaProvider, SchemaProvider, TableProvider};
use datafusion::datasource::TableType;
use datafusion::error::{DataFusionError, Result};

use crate::error::EngineError;
use crate::manifest::{Manifest, RelationKind};
use crate::store::Store;
use crate::table::DurableTable;
use crate::transaction::Transaction;

/// The schema unqualified names resolve in.
pub const DEFAULT_SCHEMA: &str = "public";
/// Where a session's temporary tables live.
pub const TEMP_SCHEMA: &str = "pg_temp";
/// The hidden schema unqualified names resolve in: a session's temporary tables, then
/// `public`, then flashsql's system tables (PostgreSQL's search path, with `flashsql` in the
/// place of `pg_catalog`). `public.x` skips the temporary tables.
pub const SEARCH_SCHEMA: &str = "$search_path";
/// flashsql's own system tables (`flashsql_models`), registered per session.
pub use flashsql_udfs::SYSTEM_SCHEMA;

/// One durable schema.
#[derive(Debug)]
pub struct DurableSchema {
    store: Arc<Store>,
    name: String,
    /// The session's open transaction block, handed to the tables it opens.
    tx: Option<Arc<Transaction>>,
}

impl DurableSchema {
    pub fn new(store: Arc<Store>, name: &str, tx: Option<Arc<Transaction>>) -> Self {
        Self {
            store,
            name: name.to_string(),
            tx,
        }
    }
}

impl DurableSchema {
    /// The catalog as the session sees it (with its block's DDL).
    fn manifest(&self) -> Arc<Manifest> {
        match &self.tx {
            Some(tx) => tx.manifest(),
            None => self.store.manifest(),
        }
    }
}

#[async_trait]
impl SchemaProvider for DurableSchema {
    fn table_names(&self) -> Vec<String> {
        let m = self.manifest();
        let tables = m
            .tables
            .iter()
            .filter(|t| t.schema == self.name)
            .map(|t| &t.name);
        let views = m
            .views
            .iter()
            .filter(|v| v.schema == self.name)
            .map(|v| &v.name);
        let ext = m
            .external
            .iter()
            .filter(|e| e.schema == self.name)
            .map(|e| &e.name);
        tables.chain(views).chain(ext).cloned().collect()
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        let m = self.manifest();
        if let Some(t) = m.table(&self.name, name) {
            let schema = self.store.table_schema(t.id, &t.columns)?;
            return Ok(Some(Arc::new(DurableTable::new(
                self.store.clone(),
                t.id,
                schema,
                self.tx.clone(),
                &t.sort_by,
            ))));
        }
        if m.relation_kind(&self.name, name).is_none() {
            return Ok(None);
        }
        Ok(match &self.tx {
            Some(tx) => tx.planned(&self.name, name),
            None => self.store.planned(&self.name, name),
        })
    }

    fn register_table(
        &self,
        name: String,
        _table: Arc<dyn TableProvider>,
    ) -> Result<Option<Arc<dyn TableProvider>>> {
        Err(
            EngineError::NotSupported(format!("registering \"{name}\" outside CREATE TABLE/VIEW"))
                .into(),
        )
    }

    /// From the catalog alone: listing relation kinds (`pg_tables`, `pg_views`) opens none.
    async fn table_type(&self, name: &str) -> Result<Option<TableType>> {
        Ok(self
            .manifest()
            .relation_kind(&self.name, name)
            .map(|kind| match kind {
                RelationKind::View => TableType::View,
                RelationKind::Table | RelationKind::External => TableType::Base,
            }))
    }

    fn table_exist(&self, name: &str) -> bool {
        self.manifest().has_relation(&self.name, name)
    }
}

/// A schema whose names are looked up in `front` first (a session's temporary tables), then
/// in `back` (`public`), then in `system` (flashsql's system tables). The system tables are
/// not listed and do not count as existing, so a user table of the same name can be created
/// and then shadows them, as a `public` table shadows `pg_catalog` in PostgreSQL.
#[derive(Debug)]
struct Overlay {
    front: Arc<MemorySchemaProvider>,
    back: Arc<dyn SchemaProvider>,
    system: Option<Arc<dyn SchemaProvider>>,
}

#[async_trait]
impl SchemaProvider for Overlay {
    fn table_names(&self) -> Vec<String> {
        let mut names = self.front.table_names();
        for n in self.back.table_names() {
            if !names.contains(&n) {
                names.push(n);
            }
        }
        names
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        if let Some(t) = self.front.table(name).await? {
            return Ok(Some(t));
        }
        if let Some(t) = self.back.table(name).await? {
            return Ok(Some(t));
        }
        match &self.system {
            Some(s) => s.table(name).await,
            None => Ok(None),
        }
    }

    fn register_table(
        &self,
        name: String,
        table: Arc<dyn TableProvider>,
    ) -> Result<Option<Arc<dyn TableProvider>>> {
        self.back.register_table(name, table)
    }

    fn table_exist(&self, name: &str) -> bool {
        self.front.table_exist(name) || self.back.table_exist(name)
    }
}

/// The catalog as one session sees it.
#[derive(Debug)]
pub struct SessionCatalog {
    store: Arc<Store>,
    temp: Arc<MemorySchemaProvider>,
    local: RwLock<HashMap<String, Arc<dyn SchemaProvider>>>,
    /// The open transaction block, if any (see `transaction`).
    tx: RwLock<Option<Arc<Transaction>>>,
}

impl SessionCatalog {
    pub fn new(store: Arc<Store>) -> Self {
        let mut local: HashMap<String, Arc<dyn SchemaProvider>> = HashMap::new();
        local.insert(
            SYSTEM_SCHEMA.to_string(),
            Arc::new(MemorySchemaProvider::new()),
        );
        Self {
            store,
            temp: Arc::new(MemorySchemaProvider::new()),
            local: RwLock::new(local),
            tx: RwLock::new(None),
        }
    }

    /// The open transaction block, if any.
    pub fn transaction(&self) -> Option<Arc<Transaction>> {
        self.tx.read().ok().and_then(|t| t.clone())
    }

    /// The catalog as this session sees it: with its open block's DDL applied.
    pub fn manifest(&self) -> Arc<Manifest> {
        match self.transaction() {
            Some(tx) => tx.manifest(),
            None => self.store.manifest(),
        }
    }

    /// Opens a transaction block; `false` if one is already open (it stays).
    pub fn begin(&self) -> bool {
        let Ok(mut tx) = self.tx.write() else {
            return false;
        };
        if tx.is_some() {
            return false;
        }
        *tx = Some(Arc::new(Transaction::begin(self.store.clone())));
        true
    }

    /// Ends the open block (if any), leaving it to the caller to commit or roll back.
    pub fn end(&self) -> Option<Arc<Transaction>> {
        self.tx.write().ok().and_then(|mut t| t.take())
    }

    /// This session's temporary tables.
    pub fn temp(&self) -> &Arc<MemorySchemaProvider> {
        &self.temp
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// Schemas that exist only for this session (`pg_catalog`, `information_schema`).
    pub fn is_local_schema(&self, name: &str) -> bool {
        name == TEMP_SCHEMA
            || self
                .local
                .read()
                .map(|l| l.contains_key(name))
                .unwrap_or(false)
    }
}

impl CatalogProvider for SessionCatalog {
    fn schema_names(&self) -> Vec<String> {
        let mut names = self.manifest().schemas.clone();
        if let Ok(local) = self.local.read() {
            names.extend(local.keys().cloned());
        }
        names
    }

    fn schema(&self, name: &str) -> Option<Arc<dyn SchemaProvider>> {
        if name == TEMP_SCHEMA {
            return Some(self.temp.clone());
        }
        if let Some(s) = self.local.read().ok().and_then(|l| l.get(name).cloned()) {
            return Some(s);
        }
        if name == SEARCH_SCHEMA {
            return Some(Arc::new(Overlay {
                front: self.temp.clone(),
                back: Arc::new(DurableSchema::new(
                    self.store.clone(),
                    DEFAULT_SCHEMA,
                    self.transaction(),
                )),
                system: self
                    .local
                    .read()
                    .ok()
                    .and_then(|l| l.get(SYSTEM_SCHEMA).cloned()),
            }));
        }
        if !self.manifest().has_schema(name) {
            return None;
        }
        Some(Arc::new(DurableSchema::new(
            self.store.clone(),
            name,
            self.transaction(),
        )))
    }

    /// Only session-local schemas are registered this way; `CREATE SCHEMA` goes through the
    /// store so that it is durable.
    fn register_schema(
        &self,
        name: &str,
        schema: Arc<dyn SchemaProvider>,
    ) -> Result<Option<Arc<dyn SchemaProvider>>> {
        let mut local = self
            .local
            .write()
            .map_err(|_| DataFusionError::Internal("session catalog lock poisoned".into()))?;
        Ok(local.insert(name.to_string(), schema))
    }
}
