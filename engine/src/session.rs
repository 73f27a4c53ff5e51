//! A session: one DataFusion context over the shared store, with the DDL that must be
//! durable (tables, views, schemas, external tables) carried out by the store instead of
//! DataFusion's in-memory catalog.

use std::sync::Arc;

use datafusion::catalog::view::ViewTable;
use datafusion::catalog::{CatalogProvider, MemTable, SchemaProvider, TableProvider};
use datafusion::common::{SchemaReference, TableReference};
use datafusion::dataframe::DataFrame;
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::runtime_env::RuntimeEnv;
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::logical_expr::{DdlStatement, DmlStatement, LogicalPlan, WriteOp};
use datafusion::prelude::{SessionConfig, SessionContext};

use crate::catalog::{DEFAULT_SCHEMA, SEARCH_SCHEMA, SessionCatalog, TEMP_SCHEMA};
use crate::catalog_change::CatalogChange;
use crate::error::EngineError;
use crate::external::{AllowedPaths, ReadOnlyTable};
use crate::information_schema::InformationSchema;
use crate::manifest::{ExternalDef, Manifest, ViewDef};
use crate::store::{RelationKind, Store, TableData};
use crate::table::write_stream;
use flashsql_gpu::store::ModelStore;

/// What a statement produced.
pub enum Output {
    /// Rows to stream to the client.
    Rows(DataFrame),
    /// A command tag (`CREATE TABLE`, `INSERT`…) and, where it has one, a row count.
    Command { tag: String, rows: Option<u64> },
}

impl Output {
    fn command(tag: &str) -> Output {
        Output::Command {
            tag: tag.to_string(),
            rows: None,
        }
    }
}

/// One client's session.
pub struct Session {
    ctx: SessionContext,
    catalog: Arc<SessionCatalog>,
    store: Arc<Store>,
    allowed: Arc<AllowedPaths>,
    database: String,
}

impl Session {
    pub(crate) fn new(
        store: Arc<Store>,
        models: Arc<ModelStore>,
        runtime: Arc<RuntimeEnv>,
        allowed: Arc<AllowedPaths>,
        database: &str,
        batch_size: usize,
    ) -> Result<Self> {
        let mut config = SessionConfig::new()
            .with_default_catalog_and_schema(database, SEARCH_SCHEMA)
            .with_create_default_catalog_and_schema(false)
            .with_information_schema(false)
            .with_batch_size(batch_size);
        let opts = config.options_mut();
        opts.set("datafusion.sql_parser.dialect", "PostgreSQL")?;
        // `now()` and `timestamptz` carry a zone, as in PostgreSQL (clients then get
        // timestamptz values with their offset, not bare timestamps).
        opts.set("datafusion.execution.time_zone", "+00:00")?;
        opts.set(
            "datafusion.sql_parser.map_string_types_to_utf8view",
            "false",
        )?;
        let state = SessionStateBuilder::new()
            .with_config(config)
            .with_runtime_env(runtime)
            .with_default_features()
            .with_analyzer_rule(Arc::new(
                flashsql_udfs::checked_arithmetic::CheckedIntegerArithmetic::default(),
            ))
            .with_analyzer_rule(Arc::new(flashsql_udfs::array_text::ArrayLiterals))
            .with_physical_optimizer_rules(crate::presorted::physical_rules())
            .with_physical_optimizer_rule(Arc::new(crate::short_text_eq::ShortTextEqRule))
            // Before the interrupt checks, which it carries into the operator it makes.
            .with_physical_optimizer_rule(Arc::new(crate::group_join::GroupJoinRule))
            .with_physical_optimizer_rule(Arc::new(crate::interrupt::InterruptRule))
            .with_physical_optimizer_rule(Arc::new(crate::broadcast_limit::BroadcastLimitRule))
            .with_physical_optimizer_rule(Arc::new(crate::window_memory::WindowMemoryRule))
            // Last: the rules before it match DataFusion's own filter.
            .with_physical_optimizer_rule(Arc::new(crate::gather_filter::GatherFilterRule))
            .build();
        let ctx = SessionContext::new_with_state(state);
        let catalog = Arc::new(SessionCatalog::new(store.clone()));
        catalog.register_schema(
            "information_schema",
            Arc::new(InformationSchema::new(Arc::downgrade(&catalog), database)),
        )?;
        ctx.register_catalog(database, catalog.clone());
        flashsql_udfs::register_all(&ctx, &models)?;
        crate::merge::register(&ctx);
        Ok(Self {
            ctx,
            catalog,
            store,
            allowed,
            database: database.to_string(),
        })
    }

    pub fn ctx(&self) -> &SessionContext {
        &self.ctx
    }

    /// The directories clients may read files from (`--allow-path`, the import folder).
    pub fn allowed(&self) -> &AllowedPaths {
        &self.allowed
    }

    pub fn catalog(&self) -> &Arc<SessionCatalog> {
        &self.catalog
    }

    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    pub fn database(&self) -> &str {
        &self.database
    }

    /// The catalog as this session sees it: with its open block's DDL applied.
    pub fn manifest(&self) -> Arc<Manifest> {
        self.catalog.manifest()
    }

    fn schema_exists(&self, schema: &str) -> bool {
        self.manifest().has_schema(schema)
    }

    /// Carries out a DDL change: recorded by the open transaction block (applied at its
    /// COMMIT, undone by ROLLBACK), or committed now. Returns whether it changed anything.
    fn change_catalog(&self, change: CatalogChange) -> Result<bool> {
        Ok(match self.catalog.transaction() {
            Some(tx) => tx.record(change)?,
            None => self.store.apply(change)?,
        })
    }

    fn drop_relation(
        &self,
        schema: String,
        name: String,
        expect: RelationKind,
        if_exists: bool,
    ) -> Result<bool> {
        self.change_catalog(CatalogChange::Drop {
            schema,
            name,
            expect,
            if_exists,
            expect_files: None,
        })
    }

    /// Resolves a table reference to `(schema, name)` in this database.
    pub fn resolve(&self, r: &TableReference) -> Result<(String, String)> {
        if let Some(c) = r.catalog()
            && c != self.database
        {
            return Err(EngineError::NotSupported(format!(
                "cross-database references (\"{c}\"): this server has one database, \"{}\"",
                self.database
            ))
            .into());
        }
        let schema = match r.schema() {
            None | Some(SEARCH_SCHEMA) => DEFAULT_SCHEMA,
            Some(s) => s,
        };
        Ok((schema.to_string(), r.table().to_string()))
    }

    /// Whether `r` names one of this session's temporary tables.
    fn temp_table(&self, r: &TableReference) -> Option<String> {
        let (_, name) = self.resolve(r).ok()?;
        let may_be_temp = matches!(r.schema(), None | Some(SEARCH_SCHEMA) | Some(TEMP_SCHEMA));
        (may_be_temp && self.catalog.temp().table_exist(&name)).then_some(name)
    }

    /// Runs a planned statement. `temporary` marks a `CREATE TEMPORARY TABLE|VIEW`.
    pub async fn execute_plan(&self, plan: LogicalPlan, temporary: bool) -> Result<Output> {
        match plan {
            LogicalPlan::Ddl(ddl) => self.execute_ddl(ddl, temporary, &[]).await,
            LogicalPlan::Dml(DmlStatement {
                op: WriteOp::Insert(_),
                ..
            }) => {
                let batches = self.ctx.execute_logical_plan(plan).await?.collect().await?;
                Ok(Output::Command {
                    tag: "INSERT".into(),
                    rows: Some(count_of(&batches)),
                })
            }
            LogicalPlan::Dml(dml) => {
                let tag = match dml.op {
                    WriteOp::Delete => "DELETE",
                    WriteOp::Update => "UPDATE",
                    WriteOp::Truncate => "TRUNCATE TABLE",
                    _ => "MERGE",
                };
                let batches = match (&dml.op, crate::dml::durable_target(&dml)) {
                    (WriteOp::Delete | WriteOp::Update, Some(table)) => {
                        let state = self.ctx.state();
                        let plan = crate::dml::plan(&state, &dml, table).await?;
                        datafusion::physical_plan::collect(plan, state.task_ctx()).await?
                    }
                    (WriteOp::Delete | WriteOp::Update, None)
                        if !crate::dml::provider_sees_condition(&dml) =>
                    {
                        return Err(EngineError::NotSupported(format!(
                            "{tag} of a temporary table with a subquery or join in its condition"
                        ))
                        .into());
                    }
                    _ => {
                        self.ctx
                            .execute_logical_plan(LogicalPlan::Dml(dml))
                            .await?
                            .collect()
                            .await?
                    }
                };
                // PostgreSQL's TRUNCATE tag carries no row count.
                let rows = (tag != "TRUNCATE TABLE").then(|| count_of(&batches));
                Ok(Output::Command {
                    tag: tag.into(),
                    rows,
                })
            }
            LogicalPlan::Copy(copy) => {
                self.allowed.check(&copy.output_url)?;
                Ok(Output::Rows(
                    self.ctx
                        .execute_logical_plan(LogicalPlan::Copy(copy))
                        .await?,
                ))
            }
            other => Ok(Output::Rows(self.ctx.execute_logical_plan(other).await?)),
        }
    }

    /// Runs a MERGE of `target` whose new contents the queries `parts` compute (see
    /// [`crate::merge`]); `tag` is the command's (`MERGE`, or `INSERT` for ON CONFLICT).
    pub async fn merge(
        &self,
        target: &TableReference,
        parts: crate::merge::MergePlans,
        tag: &str,
    ) -> Result<Output> {
        if self.temp_table(target).is_some() {
            return Err(EngineError::NotSupported(format!(
                "{tag} … of a temporary table with MERGE or ON CONFLICT"
            ))
            .into());
        }
        let provider = self.ctx.table_provider(target.clone()).await?;
        let Some(table) = provider.downcast_ref::<crate::table::DurableTable>() else {
            return Err(EngineError::NotSupported(format!(
                "{tag} into \"{target}\", which is not a table"
            ))
            .into());
        };
        let state = self.ctx.state();
        let plan = crate::merge::execute(&state, table, target, parts).await?;
        let batches = datafusion::physical_plan::collect(plan, state.task_ctx()).await?;
        Ok(Output::Command {
            tag: tag.into(),
            rows: Some(count_of(&batches)),
        })
    }

    /// Runs a planned `CREATE TABLE [AS]` whose files are all sorted by `sort_by` (see
    /// [`crate::sort_order`]).
    pub async fn create_table(
        &self,
        plan: LogicalPlan,
        temporary: bool,
        sort_by: &[String],
    ) -> Result<Output> {
        match plan {
            LogicalPlan::Ddl(ddl @ DdlStatement::CreateMemoryTable(_)) => {
                self.execute_ddl(ddl, temporary, sort_by).await
            }
            other => Err(EngineError::NotSupported(format!(
                "{} with {}",
                other.display(),
                crate::sort_order::PARAMETER
            ))
            .into()),
        }
    }

    async fn execute_ddl(
        &self,
        ddl: DdlStatement,
        temporary: bool,
        sort_by: &[String],
    ) -> Result<Output> {
        match ddl {
            DdlStatement::CreateMemoryTable(c) => {
                let is_ctas = !matches!(c.input.as_ref(), LogicalPlan::EmptyRelation(e) if !e.produce_one_row);
                let (schema, name) = self.resolve(&c.name)?;
                if !sort_by.is_empty() && (temporary || schema == TEMP_SCHEMA) {
                    return Err(EngineError::NotSupported(format!(
                        "{} on a temporary table",
                        crate::sort_order::PARAMETER
                    ))
                    .into());
                }
                if temporary || schema == TEMP_SCHEMA {
                    return self
                        .create_temp_table(&name, (*c.input).clone(), c.if_not_exists, c.or_replace)
                        .await;
                }
                if self.manifest().has_relation(&schema, &name) {
                    if c.if_not_exists {
                        return Ok(Output::command("CREATE TABLE"));
                    }
                    if !c.or_replace {
                        return Err(EngineError::RelationExists(name).into());
                    }
                }
                if !self.schema_exists(&schema) {
                    return Err(EngineError::SchemaNotFound(schema).into());
                }
                let df = self.ctx.execute_logical_plan((*c.input).clone()).await?;
                let arrow_schema =
                    crate::text_views::stored_schema(&Arc::new(df.schema().as_arrow().clone()));
                check_unique_columns(&arrow_schema)?;
                crate::sort_order::check(sort_by, &arrow_schema)?;
                let df = if sort_by.is_empty() {
                    df
                } else {
                    df.sort(crate::sort_order::sort_exprs(sort_by))?
                };
                let stream = df.execute_stream().await?;
                let id = self.store.allocate_table()?;
                let (file, path) = self.store.new_file(id);
                let rows = match write_stream(&path, &arrow_schema, stream).await {
                    Ok(r) => r,
                    Err(e) => {
                        let _ = std::fs::remove_dir_all(self.store.table_dir(id));
                        return Err(e);
                    }
                };
                let files = if rows > 0 { vec![file] } else { vec![] };
                self.change_catalog(CatalogChange::PublishTable {
                    def: TableData {
                        id,
                        files,
                        rows,
                        sort_by: sort_by.to_vec(),
                    }
                    .into_def(&schema, &name, &arrow_schema),
                    replace: c.or_replace,
                })?;
                Ok(if is_ctas {
                    Output::Command {
                        tag: "SELECT".into(),
                        rows: Some(rows),
                    }
                } else {
                    Output::command("CREATE TABLE")
                })
            }
            DdlStatement::CreateView(v) => {
                let (schema, name) = self.resolve(&v.name)?;
                let provider = Arc::new(ViewTable::new((*v.input).clone(), v.definition.clone()));
                if temporary || v.temporary || schema == TEMP_SCHEMA {
                    let temp = self.catalog.temp();
                    if temp.table_exist(&name) && !v.or_replace {
                        return Err(EngineError::RelationExists(name).into());
                    }
                    temp.deregister_table(&name)?;
                    temp.register_table(name, provider)?;
                } else {
                    self.change_catalog(CatalogChange::CreateView {
                        def: ViewDef {
                            schema,
                            name,
                            definition: v.definition.clone().unwrap_or_default(),
                            comment: None,
                        },
                        provider,
                        or_replace: v.or_replace,
                    })?;
                }
                Ok(Output::command("CREATE VIEW"))
            }
            DdlStatement::CreateCatalogSchema(s) => {
                // DataFusion joins the name's parts with dots (quotes gone): the wire layer
                // calls `create_schema` with the parsed parts instead.
                let name = s.schema_name.rsplit('.').next().unwrap_or_default();
                self.create_schema(name, s.if_not_exists)
            }
            DdlStatement::DropCatalogSchema(d) => {
                let schema = match &d.name {
                    SchemaReference::Bare { schema } => schema.to_string(),
                    SchemaReference::Full { schema, catalog } => {
                        if catalog.as_ref() != self.database {
                            return Err(EngineError::SchemaNotFound(format!("{catalog}.{schema}")).into());
                        }
                        schema.to_string()
                    }
                };
                if schema == DEFAULT_SCHEMA {
                    return Err(EngineError::NotSupported("dropping schema public".into()).into());
                }
                self.change_catalog(CatalogChange::DropSchema {
                    name: schema,
                    if_exists: d.if_exists,
                    cascade: d.cascade,
                })?;
                Ok(Output::command("DROP SCHEMA"))
            }
            DdlStatement::DropTable(d) => {
                if let Some(name) = self.temp_table(&d.name) {
                    self.catalog.temp().deregister_table(&name)?;
                } else {
                    let (schema, name) = self.resolve(&d.name)?;
                    self.drop_relation(schema, name, RelationKind::Table, d.if_exists)?;
                }
                Ok(Output::command("DROP TABLE"))
            }
            DdlStatement::DropView(d) => {
                if let Some(name) = self.temp_table(&d.name) {
                    self.catalog.temp().deregister_table(&name)?;
                } else {
                    let (schema, name) = self.resolve(&d.name)?;
                    self.drop_relation(schema, name, RelationKind::View, d.if_exists)?;
                }
                Ok(Output::command("DROP VIEW"))
            }
            DdlStatement::CreateExternalTable(cmd) => {
                let (schema, name) = self.resolve(&cmd.name)?;
                if self.manifest().has_relation(&schema, &name) && cmd.if_not_exists {
                    return Ok(Output::command("CREATE EXTERNAL TABLE"));
                }
                let state = self.ctx.state();
                let file_type = cmd.file_type.to_ascii_uppercase();
                let factory = state.table_factories().get(file_type.as_str()).ok_or_else(|| {
                    EngineError::NotSupported(format!(
                        "external tables STORED AS {file_type}: use PARQUET, CSV, JSON or ARROW"
                    ))
                })?;
                self.allowed.check_all(&cmd.locations)?;
                let provider: Arc<dyn TableProvider> =
                    Arc::new(ReadOnlyTable::new(factory.create(&state, &cmd).await?, &name));
                let definition = cmd.definition.clone().unwrap_or_default();
                if cmd.temporary || schema == TEMP_SCHEMA {
                    self.catalog.temp().register_table(name, provider)?;
                } else {
                    self.change_catalog(CatalogChange::CreateExternal {
                        def: ExternalDef {
                            schema,
                            name,
                            definition,
                        },
                        provider,
                        or_replace: cmd.or_replace,
                    })?;
                }
                Ok(Output::command("CREATE EXTERNAL TABLE"))
            }
            DdlStatement::CreateIndex(_) => Err(EngineError::NotSupported(
                "CREATE INDEX (tables are columnar Parquet, scanned with statistics pruning; no index is needed)".into(),
            )
            .into()),
            other => Err(EngineError::NotSupported(other.name().to_string()).into()),
        }
    }

    async fn create_temp_table(
        &self,
        name: &str,
        input: LogicalPlan,
        if_not_exists: bool,
        or_replace: bool,
    ) -> Result<Output> {
        let temp = self.catalog.temp();
        if temp.table_exist(name) {
            if if_not_exists {
                return Ok(Output::command("CREATE TABLE"));
            }
            if !or_replace {
                return Err(EngineError::RelationExists(name.to_string()).into());
            }
        }
        let is_ctas = !matches!(&input, LogicalPlan::EmptyRelation(e) if !e.produce_one_row);
        let df = self.ctx.execute_logical_plan(input).await?;
        let schema = Arc::new(df.schema().as_arrow().clone());
        check_unique_columns(&schema)?;
        let batches = df.collect().await?;
        let rows: usize = batches.iter().map(|b| b.num_rows()).sum();
        let table = MemTable::try_new(schema, vec![batches])?;
        temp.deregister_table(name)?;
        temp.register_table(name.to_string(), Arc::new(table))?;
        Ok(if is_ctas {
            Output::Command {
                tag: "SELECT".into(),
                rows: Some(rows as u64),
            }
        } else {
            Output::command("CREATE TABLE")
        })
    }

    /// `CREATE SCHEMA [IF NOT EXISTS] <schema>`, the name as parsed (any characters).
    pub fn create_schema(&self, name: &str, if_not_exists: bool) -> Result<Output> {
        if name == TEMP_SCHEMA || self.catalog.is_local_schema(name) {
            return Err(EngineError::SchemaExists(name.to_string()).into());
        }
        self.change_catalog(CatalogChange::CreateSchema {
            name: name.to_string(),
            if_not_exists,
        })?;
        Ok(Output::command("CREATE SCHEMA"))
    }

    /// `ALTER TABLE|VIEW <from> RENAME TO <to>`: the new name stays in the same schema.
    pub fn rename(&self, from: &TableReference, to: &TableReference) -> Result<()> {
        let to_name = to.table().to_string();
        if let Some(name) = self.temp_table(from) {
            let temp = self.catalog.temp();
            if temp.table_exist(&to_name) {
                return Err(EngineError::RelationExists(to_name).into());
            }
            if let Some(t) = temp.deregister_table(&name)? {
                temp.register_table(to_name, t)?;
            }
            return Ok(());
        }
        let (schema, name) = self.resolve(from)?;
        if let Some(s) = to.schema()
            && s != schema
        {
            return Err(EngineError::NotSupported(
                "moving a relation to another schema with RENAME".into(),
            )
            .into());
        }
        if !self.schema_exists(&schema) {
            return Err(EngineError::SchemaNotFound(schema).into());
        }
        self.change_catalog(CatalogChange::Rename {
            schema,
            from: name,
            to: to_name,
        })?;
        Ok(())
    }

    /// `ALTER TABLE … SET (sort_by = …)`: declares `keys` as the table's order (none when
    /// empty) and rewrites its rows in it (see [`crate::reorder`]).
    pub async fn set_sort_order(&self, r: &TableReference, keys: Vec<String>) -> Result<()> {
        if self.temp_table(r).is_some() {
            return Err(EngineError::NotSupported(format!(
                "{} on a temporary table",
                crate::sort_order::PARAMETER
            ))
            .into());
        }
        let (schema, name) = self.resolve(r)?;
        let state = self.ctx.state();
        match self.catalog.transaction() {
            Some(tx) => {
                crate::reorder::set_sort_order(&state, &self.store, &tx, &schema, &name, keys).await
            }
            None => {
                crate::reorder::set_sort_order_now(&state, &self.store, &schema, &name, keys).await
            }
        }
    }

    /// `COMMENT ON TABLE|VIEW … IS …`.
    pub fn comment(&self, r: &TableReference, comment: Option<String>) -> Result<()> {
        if self.temp_table(r).is_some() {
            return Ok(());
        }
        let (schema, name) = self.resolve(r)?;
        self.change_catalog(CatalogChange::Comment {
            schema,
            name,
            comment,
        })?;
        Ok(())
    }

    /// Plans `sql` (one statement) with this session's state.
    pub async fn sql(&self, sql: &str) -> Result<Output> {
        let plan = self.ctx.state().create_logical_plan(sql).await?;
        self.execute_plan(plan, false).await
    }

    /// Re-plans the stored views and external tables after a restart. Views may depend on
    /// each other, so this repeats until no more can be planned.
    pub(crate) async fn replan_stored_relations(&self) -> Result<Vec<String>> {
        let m = self.store.manifest();
        let state = self.ctx.state();
        for e in &m.external {
            let plan = state.create_logical_plan(&e.definition).await;
            let provider: Result<Arc<dyn TableProvider>> = match plan {
                Ok(LogicalPlan::Ddl(DdlStatement::CreateExternalTable(cmd))) => {
                    if let Err(denied) = self.allowed.check_all(&cmd.locations) {
                        tracing::warn!(table = %e.name, error = %denied, "external table not opened");
                        continue;
                    }
                    match state
                        .table_factories()
                        .get(cmd.file_type.to_ascii_uppercase().as_str())
                    {
                        Some(f) => f.create(&state, &cmd).await.map(|p| {
                            Arc::new(ReadOnlyTable::new(p, &e.name)) as Arc<dyn TableProvider>
                        }),
                        None => Err(DataFusionError::Plan(format!(
                            "no factory for {}",
                            cmd.file_type
                        ))),
                    }
                }
                Ok(_) => Err(DataFusionError::Plan("not a CREATE EXTERNAL TABLE".into())),
                Err(e) => Err(e),
            };
            match provider {
                Ok(p) => self.store.set_planned(&e.schema, &e.name, p),
                Err(err) => {
                    tracing::warn!(table = %e.name, error = %err, "external table could not be opened")
                }
            }
        }
        let mut pending: Vec<_> = m.views.clone();
        let mut failures = Vec::new();
        loop {
            let mut progressed = false;
            failures.clear();
            let mut still = Vec::new();
            for v in pending {
                match state.create_logical_plan(&v.definition).await {
                    Ok(LogicalPlan::Ddl(DdlStatement::CreateView(cv))) => {
                        let provider = Arc::new(ViewTable::new(
                            (*cv.input).clone(),
                            Some(v.definition.clone()),
                        ));
                        self.store.set_planned(&v.schema, &v.name, provider);
                        progressed = true;
                    }
                    Ok(_) => failures.push(format!("{}.{}: not a CREATE VIEW", v.schema, v.name)),
                    Err(e) => {
                        failures.push(format!("{}.{}: {e}", v.schema, v.name));
                        still.push(v);
                    }
                }
            }
            pending = still;
            if pending.is_empty() || !progressed {
                break;
            }
        }
        Ok(failures)
    }
}

fn count_of(batches: &[datafusion::arrow::array::RecordBatch]) -> u64 {
    use datafusion::arrow::array::{Array, UInt64Array};
    batches
        .first()
        .and_then(|b| b.column_by_name("count"))
        .and_then(|c| {
            c.as_any()
                .downcast_ref::<UInt64Array>()
                .map(|a| if a.is_empty() { 0 } else { a.value(0) })
        })
        .unwrap_or(0)
}

fn check_unique_columns(schema: &datafusion::arrow::datatypes::Schema) -> Result<()> {
    let mut seen = std::collections::HashSet::new();
    for f in schema.fields() {
        if !seen.insert(f.name().as_str()) {
            return Err(EngineError::DuplicateColumn(f.name().clone()).into());
        }
    }
    Ok(())
}
