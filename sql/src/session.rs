//! A PostgreSQL-flavoured session: the engine session plus `pg_catalog`, run-time
//! parameters, and the statements DataFusion does not plan (SET/SHOW, transactions, COPY,
//! renames, temporary tables, comments). Used by the wire handlers and, in-process, by the
//! SQL logic tests.

use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering as AtomicOrdering};

use datafusion::arrow::array::{RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::common::{ParamValues, TableReference};
use datafusion::dataframe::{DataFrame, DataFrameWriteOptions};
use datafusion::logical_expr::LogicalPlan;
use datafusion::sql::parser::{DFParser, Statement as DFStatement};
use datafusion::sql::sqlparser::ast::{
    AlterTableOperation, CloseCursor, CommentObject, CopySource, CopyTarget, CreateTableOptions,
    Expr as SqlExpr, Insert, ObjectName, RenameTableNameKind, Reset, SchemaName, Set, Statement,
    TableObject, Value,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use flashsql_engine::{Engine, Output};
use tracing::warn;

use crate::compat;
use crate::copy::CopyFormat;
use crate::cursors::{Cursors, fetch_count};
use crate::errors::SqlError;
use crate::merge::MergeQueries;
use crate::parser::CompatParser;
use crate::point_lookup::PointLookup;
use crate::settings::{Settings, canonical};
use flashsql_engine::merge::MergePlans;

/// What one statement produced.
pub enum StatementResult {
    /// Rows computed when the client reads them.
    Rows(DataFrame),
    /// Rows already computed (SHOW and friends).
    Batches(SchemaRef, Vec<RecordBatch>),
    Command {
        tag: String,
        rows: Option<u64>,
    },
    TransactionStart(&'static str),
    TransactionEnd(&'static str),
    /// The client must now send the data (`COPY … FROM STDIN`).
    CopyIn(CopyIn),
    /// Rows to send as COPY data (`COPY … TO STDOUT`).
    CopyOut(DataFrame, CopyFormat),
}

impl From<Output> for StatementResult {
    fn from(output: Output) -> Self {
        match output {
            Output::Rows(df) => StatementResult::Rows(df),
            Output::Command { tag, rows } => StatementResult::Command { tag, rows },
        }
    }
}

/// A COPY FROM STDIN waiting for its data.
#[derive(Debug, Clone)]
pub struct CopyIn {
    pub table: TableReference,
    /// The columns the data holds, in order.
    pub columns: SchemaRef,
    /// All the table's columns.
    pub table_schema: SchemaRef,
    pub format: CopyFormat,
}

/// A statement prepared with the extended protocol.
#[derive(Debug, Clone)]
pub struct Prepared {
    pub sql: String,
    pub statement: Option<DFStatement>,
    pub param_types: Vec<Option<DataType>>,
    /// Result columns, when the statement returns rows.
    pub columns: Option<SchemaRef>,
    /// Set when the statement is a point lookup that can be answered from memory.
    pub lookup: Option<Arc<PointLookup>>,
}

/// One client's session.
pub struct PgSession {
    engine: flashsql_engine::Session,
    parser: Arc<CompatParser>,
    settings: Arc<Settings>,
    cursors: Cursors,
    /// A statement failed inside the open transaction block: until it ends, the others
    /// are refused with 25P02.
    tx_failed: AtomicBool,
    /// The open block is the implicit one of a multi-statement simple query (see
    /// [`PgSession::begin_implicit`]), not one the client began.
    implicit: AtomicBool,
    /// The user logged in with the read-only role: every write is refused (42501), whatever
    /// the session's settings say.
    read_only_user: Option<String>,
}

fn one_text_column(name: &str, values: Vec<String>) -> Result<StatementResult, SqlError> {
    let schema = Arc::new(Schema::new(vec![Field::new(name, DataType::Utf8, true)]));
    let batch = RecordBatch::try_new(schema.clone(), vec![Arc::new(StringArray::from(values))])?;
    Ok(StatementResult::Batches(schema, vec![batch]))
}

fn command(tag: &str) -> StatementResult {
    StatementResult::Command {
        tag: tag.to_string(),
        rows: None,
    }
}

fn object_name_to_ref(name: &ObjectName) -> TableReference {
    let parts: Vec<String> = name
        .0
        .iter()
        .filter_map(|p| p.as_ident())
        // Unquoted names fold to lower case, as in PostgreSQL (and DataFusion's planner).
        .map(|i| match i.quote_style {
            Some(_) => i.value.clone(),
            None => i.value.to_lowercase(),
        })
        .collect();
    match parts.as_slice() {
        [t] => TableReference::bare(t.as_str()),
        [s, t] => TableReference::partial(s.as_str(), t.as_str()),
        [c, s, t] => TableReference::full(c.as_str(), s.as_str(), t.as_str()),
        _ => TableReference::bare(name.to_string()),
    }
}

/// The text of a SET value: identifiers and strings without quotes, numbers as written.
fn set_value_text(values: &[SqlExpr]) -> String {
    values
        .iter()
        .map(|v| match v {
            SqlExpr::Value(v) => match &v.value {
                Value::SingleQuotedString(s) | Value::DoubleQuotedString(s) => s.clone(),
                other => other.to_string(),
            },
            SqlExpr::Identifier(i) => i.value.clone(),
            other => other.to_string(),
        })
        .collect::<Vec<_>>()
        .join(", ")
}

impl PgSession {
    pub fn new(
        engine: &Engine,
        parser: Arc<CompatParser>,
        user: &str,
        application_name: Option<&str>,
    ) -> Result<Self, SqlError> {
        let session = engine.new_session()?;
        let database = session.database().to_string();
        let settings = Arc::new(Settings::new(user, application_name));
        crate::pg_catalog::setup(session.ctx(), &database, settings.clone())?;
        compat::register(session.ctx(), settings.clone());
        Ok(Self {
            engine: session,
            parser,
            settings,
            cursors: Cursors::default(),
            tx_failed: AtomicBool::new(false),
            implicit: AtomicBool::new(false),
            read_only_user: None,
        })
    }

    /// Restricts the session to reading, for `user` with the read-only role. The session
    /// also starts with `default_transaction_read_only` on, so that tools see it.
    pub fn reading_only(mut self, user: &str) -> Self {
        self.settings.set("default_transaction_read_only", "on");
        self.read_only_user = Some(user.to_string());
        self
    }

    /// Whether `statement` may run now: inside a block where a statement failed, only
    /// statements that end the block (or roll back to a savepoint) may (25P02 otherwise).
    pub fn check_block(&self, statement: &DFStatement) -> Result<(), SqlError> {
        let ends = matches!(
            statement,
            DFStatement::Statement(s) if matches!(**s, Statement::Commit { .. } | Statement::Rollback { .. })
        );
        if ends || !self.tx_failed.load(AtomicOrdering::SeqCst) {
            return Ok(());
        }
        Err(SqlError::coded(
            "25P02",
            "current transaction is aborted, commands ignored until end of transaction block",
        ))
    }

    /// Runs `load_file(…)`: the file must be under a directory clients may read (42501).
    async fn load_file(
        &self,
        call: crate::load_call::LoadCall,
    ) -> Result<StatementResult, SqlError> {
        use flashsql_engine::load::{Source, Target, load};
        let source: Source = call.format.parse()?;
        self.engine.allowed().check(&call.path)?;
        let path = std::path::PathBuf::from(&call.path);
        let table = match call.table {
            Some(t) => t,
            None => flashsql_engine::load::default_table_name(&path).ok_or_else(|| {
                SqlError::coded("22023", "load_file: name the table with table => …")
            })?,
        };
        let target = Target {
            schema: call
                .schema
                .unwrap_or_else(|| flashsql_engine::catalog::DEFAULT_SCHEMA.to_string()),
            table,
            append: call.append,
        };
        let rows = load(&self.engine, source, &path, &target).await?;
        let schema = load_result_schema();
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                Arc::new(StringArray::from(vec![format!(
                    "{}.{}",
                    target.schema, target.table
                )])),
                Arc::new(datafusion::arrow::array::Int64Array::from(vec![
                    rows as i64,
                ])),
            ],
        )?;
        Ok(StatementResult::Batches(schema, vec![batch]))
    }

    /// Whether a transaction block is open.
    pub fn in_block(&self) -> bool {
        self.engine.catalog().transaction().is_some()
    }

    /// Opens the implicit transaction of a simple query holding several statements, as
    /// PostgreSQL does: they commit together at its end, and a failure rolls back all of
    /// them. A `BEGIN` among them makes it the client's block; a `COMMIT` or `ROLLBACK`
    /// ends it (the statements after it get a new one). `false` if a block is open.
    pub fn begin_implicit(&self) -> bool {
        let opened = self.engine.catalog().begin();
        if opened {
            self.implicit.store(true, AtomicOrdering::SeqCst);
        }
        opened
    }

    /// Whether the open block is a simple query's implicit transaction.
    pub fn in_implicit(&self) -> bool {
        self.implicit.load(AtomicOrdering::SeqCst)
    }

    /// Ends the implicit transaction if one is open: commits it, or rolls it back (after a
    /// failed statement, or when `commit` is false).
    pub async fn end_implicit(&self, commit: bool) -> Result<(), SqlError> {
        if self.implicit.swap(false, AtomicOrdering::SeqCst) {
            self.end_block(commit).await?;
        }
        Ok(())
    }

    /// Notes that a statement failed: an open transaction block can then only be ended.
    pub fn statement_failed(&self) {
        if self.engine.catalog().transaction().is_some() {
            self.tx_failed.store(true, AtomicOrdering::SeqCst);
        }
    }

    /// The open transaction block, or 25P001 for a statement that needs one.
    fn block(
        &self,
        what: &str,
    ) -> Result<Arc<flashsql_engine::transaction::Transaction>, SqlError> {
        self.engine.catalog().transaction().ok_or_else(|| {
            SqlError::coded(
                "25P01",
                format!("{what} can only be used in transaction blocks"),
            )
        })
    }

    /// Ends the open block: commits it (`commit`, unless a statement failed in it) or rolls
    /// it back. Returns the tag PostgreSQL answers (a failed block's COMMIT says ROLLBACK).
    async fn end_block(&self, commit: bool) -> Result<&'static str, SqlError> {
        self.settings.reset("transaction_read_only");
        self.implicit.store(false, AtomicOrdering::SeqCst);
        let failed = self.tx_failed.swap(false, AtomicOrdering::SeqCst);
        let Some(tx) = self.engine.catalog().end() else {
            self.cursors.end_transaction(true).await;
            if commit {
                warn!("COMMIT outside a transaction block: there is no transaction in progress");
            }
            return Ok(if commit { "COMMIT" } else { "ROLLBACK" });
        };
        if commit && !failed {
            let committed = tx.commit();
            self.cursors.end_transaction(committed.is_ok()).await;
            committed?;
            Ok("COMMIT")
        } else {
            self.cursors.end_transaction(false).await;
            tx.rollback();
            Ok("ROLLBACK")
        }
    }

    /// Whether writes are refused now (`default_transaction_read_only`, or a read-only
    /// transaction).
    fn read_only(&self) -> bool {
        let on = |name| {
            self.settings.get(name).is_some_and(|v| {
                matches!(v.to_ascii_lowercase().as_str(), "on" | "true" | "1" | "yes")
            })
        };
        on("transaction_read_only") || on("default_transaction_read_only")
    }

    /// The columns of an open cursor.
    pub async fn cursor_columns(&self, name: &str) -> Result<SchemaRef, SqlError> {
        self.cursors.schema(name).await
    }

    pub fn settings(&self) -> &Arc<Settings> {
        &self.settings
    }

    pub fn engine_session(&self) -> &flashsql_engine::Session {
        &self.engine
    }

    /// Parses a query string into statements (with PostgreSQL client-query rewrites).
    /// DataFusion's own statements (`CREATE EXTERNAL TABLE`) go through its parser.
    pub fn parse(&self, sql: &str) -> Result<Vec<DFStatement>, SqlError> {
        crate::complexity::check_text(sql)?;
        // The SQL parser reads `CREATE EXTERNAL TABLE` as Hive DDL, which DataFusion does not
        // plan; DataFusion's own parser reads it as DataFusion's statement.
        let external = if sql.to_ascii_uppercase().contains("EXTERNAL TABLE") {
            DFParser::parse_sql_with_dialect(sql, &PostgreSqlDialect {}).ok()
        } else {
            None
        };
        let statements = match external {
            Some(statements) => statements.into_iter().collect(),
            None => self
                .parser
                .parse(&crate::rewrite::client_queries(sql))?
                .into_iter()
                .map(|s| DFStatement::Statement(Box::new(s)))
                .collect(),
        };
        let mut statements = crate::complexity::check(sql, statements, |s| match s {
            DFStatement::Statement(s) => Some(s.as_ref()),
            _ => None,
        })?;
        for s in &mut statements {
            if let DFStatement::Statement(s) = s {
                crate::rewrite::client_expressions(s);
                crate::named_arguments::fill_gaps(s);
                crate::rewrite::catalog_relations(s);
                crate::rewrite::exists_in_select_lists(s);
                crate::rewrite::distinct_on_with_subqueries(s);
                crate::colnames::name_nested_functions(s);
                crate::rewrite::update_from(s);
                crate::rewrite::values_with_subqueries(s);
                crate::rewrite::subqueries_have_a_column(s)?;
            }
        }
        Ok(statements)
    }

    /// Plans a statement DataFusion understands.
    async fn plan(&self, statement: Statement) -> Result<LogicalPlan, SqlError> {
        self.plan_df(DFStatement::Statement(Box::new(statement)))
            .await
    }

    /// Plans a statement; a query's unaliased result columns get PostgreSQL's names.
    async fn plan_named(&self, statement: DFStatement) -> Result<LogicalPlan, SqlError> {
        let names = match &statement {
            DFStatement::Statement(s) => match s.as_ref() {
                Statement::Query(q) => crate::colnames::pg_names(q),
                _ => None,
            },
            _ => None,
        };
        let plan = self.plan_df(statement).await?;
        Ok(match names {
            Some(names) => crate::colnames::apply(plan, &names)?,
            None => plan,
        })
    }

    async fn plan_df(&self, statement: DFStatement) -> Result<LogicalPlan, SqlError> {
        let state = self.engine.ctx().state();
        let plan = state.statement_to_plan(statement).await?;
        Ok(crate::scalar_subquery::aggregate_correlated(plan)?)
    }

    /// Describes a statement for the extended protocol: parameter and result types.
    pub async fn prepare(&self, sql: &str) -> Result<Prepared, SqlError> {
        let mut statements = self.parse(sql)?;
        if statements.len() > 1 {
            return Err(SqlError::syntax(
                "cannot insert multiple commands into a prepared statement",
            ));
        }
        let Some(statement) = statements.pop() else {
            return Ok(Prepared {
                sql: sql.to_string(),
                statement: None,
                param_types: vec![],
                columns: None,
                lookup: None,
            });
        };
        let kind = match &statement {
            DFStatement::Statement(s) => utility_kind(s),
            _ => Utility::Planned,
        };
        let mut lookup = None;
        let (param_types, columns) = match kind {
            Utility::Show(name) => (
                vec![],
                Some(Arc::new(Schema::new(vec![Field::new(
                    name,
                    DataType::Utf8,
                    true,
                )]))),
            ),
            Utility::ShowAll => (
                vec![],
                Some(Arc::new(Schema::new(vec![
                    Field::new("name", DataType::Utf8, true),
                    Field::new("setting", DataType::Utf8, true),
                    Field::new("description", DataType::Utf8, true),
                ]))),
            ),
            Utility::Session | Utility::Catalog => (vec![], None),
            Utility::Load => (vec![], Some(load_result_schema())),
            Utility::Fetch(name) => (vec![], Some(self.cursors.schema(&name).await?)),
            Utility::Merge => {
                let statement = statement_ref(&statement)?;
                // An upsert's inserted values take the target's column types, as in the plain
                // INSERT (inside the MERGE they are a VALUES list of their own).
                let mut types: Vec<Option<DataType>> = match statement {
                    Statement::Insert(insert) => {
                        parameter_types(&self.plan_plain_insert(insert).await?)?
                    }
                    _ => Vec::new(),
                };
                if let Some((queries, _)) = self.merge_queries(statement).await? {
                    let plans = self.plan_merge(&queries).await?;
                    for plan in std::iter::once(&plans.kept).chain(plans.inserted.as_ref()) {
                        for (i, t) in parameter_types(plan)?.into_iter().enumerate() {
                            if i >= types.len() {
                                types.push(t);
                            } else if types[i].is_none() {
                                types[i] = t;
                            }
                        }
                    }
                }
                (types, None)
            }
            Utility::Declare(query) => {
                let plan = self.plan(Statement::Query(query)).await?;
                (parameter_types(&plan)?, None)
            }
            Utility::Planned => {
                let plan = self.plan_named(planned_form(statement.clone())).await?;
                lookup = PointLookup::recognise(&plan).map(Arc::new);
                let columns = match &plan {
                    LogicalPlan::Ddl(_) | LogicalPlan::Dml(_) => None,
                    p => Some(Arc::new(p.schema().as_arrow().clone())),
                };
                (parameter_types(&plan)?, columns)
            }
        };
        Ok(Prepared {
            sql: sql.to_string(),
            statement: Some(statement),
            param_types,
            columns,
            lookup,
        })
    }

    /// A point lookup's rows read from memory, or None when the statement must be planned
    /// and run (see [`PointLookup`]).
    pub async fn point_lookup(
        &self,
        lookup: &PointLookup,
        params: &ParamValues,
    ) -> Option<StatementResult> {
        let table = self
            .engine
            .ctx()
            .table_provider(lookup.table().clone())
            .await
            .ok()?;
        let rows = lookup.answer(table.as_ref(), params)?;
        Some(StatementResult::Batches(
            lookup.schema().clone(),
            vec![rows],
        ))
    }

    /// Whether a statement only touches session state (SET, SHOW, BEGIN…) and so never needs
    /// the execution runtime.
    pub fn is_utility(statement: &DFStatement) -> bool {
        match statement {
            DFStatement::Statement(s) => matches!(
                utility_kind(s),
                Utility::Show(_) | Utility::ShowAll | Utility::Session
            ),
            _ => false,
        }
    }

    /// Runs one statement. `params` are the bound values of a prepared statement.
    pub async fn execute(
        &self,
        statement: DFStatement,
        params: Option<ParamValues>,
    ) -> Result<StatementResult, SqlError> {
        if let Some(what) = crate::read_only::writes(&statement) {
            if let Some(user) = &self.read_only_user {
                return Err(crate::read_only::denied(user, what));
            }
            if self.read_only() {
                return Err(crate::read_only::refused(what));
            }
        }
        let statement = match statement {
            DFStatement::Statement(s) => *s,
            other => {
                let plan = self.plan_df(other).await?;
                return self.run_plan(plan, params, false).await;
            }
        };
        if let Statement::Query(q) = &statement
            && let Some(call) = crate::load_call::parse(q)
        {
            return self.load_file(call?).await;
        }
        match statement {
            Statement::Merge(_) | Statement::Insert(Insert { on: Some(_), .. }) => {
                match self.merge_queries(&statement).await? {
                    Some((queries, tag)) => self.merge(queries, tag, params).await,
                    None => {
                        let Statement::Insert(insert) = &statement else {
                            return Err(SqlError::not_supported("MERGE without a target"));
                        };
                        let plan = self.plan_plain_insert(insert).await?;
                        self.run_plan(plan, params, false).await
                    }
                }
            }
            Statement::Set(set) => self.set(set),
            Statement::ShowVariable { variable } => self.show(&variable_name(&variable)),
            Statement::Reset(r) => {
                match r.reset {
                    Reset::ALL => self.settings.reset_all(),
                    Reset::ConfigurationParameter(n) => self.settings.reset(&n.to_string()),
                }
                Ok(command("RESET"))
            }
            Statement::StartTransaction { modes, .. } => {
                if let Some(read_only) = crate::read_only::access_mode(&modes) {
                    self.settings.set(
                        "transaction_read_only",
                        if read_only { "on" } else { "off" },
                    );
                }
                // Inside a simple query's implicit transaction BEGIN makes it the client's.
                let implicit = self.implicit.swap(false, AtomicOrdering::SeqCst);
                if !self.engine.catalog().begin() && !implicit {
                    warn!(
                        "BEGIN inside a transaction block: there is already a transaction in progress"
                    );
                }
                Ok(StatementResult::TransactionStart("BEGIN"))
            }
            Statement::Commit { .. } => {
                let tag = self.end_block(true).await?;
                Ok(StatementResult::TransactionEnd(tag))
            }
            Statement::Rollback {
                savepoint: None, ..
            } => {
                self.end_block(false).await?;
                Ok(StatementResult::TransactionEnd("ROLLBACK"))
            }
            Statement::Rollback {
                savepoint: Some(name),
                ..
            } => {
                self.block("ROLLBACK TO SAVEPOINT")?
                    .rollback_to(&name.value)?;
                self.tx_failed.store(false, AtomicOrdering::SeqCst);
                Ok(command("ROLLBACK"))
            }
            Statement::Savepoint { name } => {
                self.block("SAVEPOINT")?.savepoint(&name.value)?;
                Ok(command("SAVEPOINT"))
            }
            Statement::ReleaseSavepoint { name } => {
                self.block("RELEASE SAVEPOINT")?.release(&name.value)?;
                Ok(command("RELEASE"))
            }
            Statement::Declare { mut stmts } => {
                let (Some(d), true) = (stmts.pop(), stmts.is_empty()) else {
                    return Err(SqlError::not_supported(
                        "DECLARE of several cursors at once",
                    ));
                };
                let (Some(query), [name]) = (d.for_query, d.names.as_slice()) else {
                    return Err(SqlError::not_supported(
                        "DECLARE other than DECLARE name CURSOR FOR query",
                    ));
                };
                let plan = self.plan(Statement::Query(query)).await?;
                let plan = match params {
                    Some(p) => plan.replace_params_with_values(&p)?,
                    None => plan,
                };
                let df = self.engine.ctx().execute_logical_plan(plan).await?;
                let in_block = self.engine.catalog().transaction().is_some();
                self.cursors
                    .declare(&name.value, df, d.hold.unwrap_or(false), in_block)
                    .await?;
                Ok(command("DECLARE CURSOR"))
            }
            Statement::Fetch {
                name, direction, ..
            } => {
                let (schema, batches) = self
                    .cursors
                    .fetch(&name.value, fetch_count(&direction)?)
                    .await?;
                Ok(StatementResult::Batches(schema, batches))
            }
            Statement::Close { cursor } => {
                match cursor {
                    CloseCursor::All => self.cursors.close(None).await?,
                    CloseCursor::Specific { name } => self.cursors.close(Some(&name.value)).await?,
                }
                Ok(command("CLOSE CURSOR"))
            }
            Statement::Discard { .. } => {
                self.settings.reset_all();
                let temp = self.engine.catalog().temp();
                for name in datafusion::catalog::SchemaProvider::table_names(temp.as_ref()) {
                    datafusion::catalog::SchemaProvider::deregister_table(temp.as_ref(), &name)?;
                }
                Ok(command("DISCARD ALL"))
            }
            Statement::Deallocate { .. } => Ok(command("DEALLOCATE")),
            Statement::Analyze(_) => Ok(command("ANALYZE")),
            Statement::Vacuum(_) => Ok(command("VACUUM")),
            Statement::Comment {
                object_type,
                object_name,
                comment,
                ..
            } => {
                if matches!(object_type, CommentObject::Table | CommentObject::View) {
                    self.engine
                        .comment(&object_name_to_ref(&object_name), comment)?;
                }
                Ok(command("COMMENT"))
            }
            Statement::AlterTable(alter) => {
                let from = object_name_to_ref(&alter.name);
                match alter.operations.as_slice() {
                    [AlterTableOperation::RenameTable { table_name }] => {
                        let to = match table_name {
                            RenameTableNameKind::To(n) | RenameTableNameKind::As(n) => {
                                object_name_to_ref(n)
                            }
                        };
                        match self.engine.rename(&from, &to) {
                            Err(e)
                                if alter.if_exists
                                    && crate::errors::classify(&e).code == "42P01" => {}
                            r => r?,
                        }
                        Ok(command("ALTER TABLE"))
                    }
                    [AlterTableOperation::SetOptionsParens { options }] => {
                        let keys = crate::storage_params::alter_sort_by(options.clone())?;
                        match self.engine.set_sort_order(&from, keys).await {
                            Err(e)
                                if alter.if_exists
                                    && crate::errors::classify(&e).code == "42P01" => {}
                            r => r?,
                        }
                        Ok(command("ALTER TABLE"))
                    }
                    _ => Err(SqlError::not_supported(
                        "ALTER TABLE other than RENAME TO and SET (sort_by = …) (recreate the \
                         table with CREATE TABLE AS)",
                    )),
                }
            }
            Statement::Copy {
                source,
                to,
                target,
                options,
                legacy_options,
                ..
            } => {
                let format = CopyFormat::from_options(&options, &legacy_options)?;
                self.copy(source, to, target, format).await
            }
            Statement::CreateSchema {
                schema_name: SchemaName::Simple(name),
                if_not_exists,
                ..
            } => {
                let schema = match object_name_to_ref(&name) {
                    TableReference::Bare { table } => table.to_string(),
                    TableReference::Partial { schema, table }
                        if schema.as_ref() == self.engine.database() =>
                    {
                        table.to_string()
                    }
                    _ => {
                        return Err(SqlError::coded(
                            "3D000",
                            format!(
                                "CREATE SCHEMA {name}: this server has one database, \"{}\"",
                                self.engine.database()
                            ),
                        ));
                    }
                };
                Ok(self.engine.create_schema(&schema, if_not_exists)?.into())
            }
            Statement::CreateTable(mut ct)
                if ct.temporary || !matches!(ct.table_options, CreateTableOptions::None) =>
            {
                let sort_by = crate::storage_params::take_sort_by(&mut ct)?;
                let temporary = std::mem::take(&mut ct.temporary);
                let plan = bind(self.plan(Statement::CreateTable(ct)).await?, params)?;
                Ok(self
                    .engine
                    .create_table(plan, temporary, &sort_by)
                    .await?
                    .into())
            }
            other => {
                let plan = self
                    .plan_named(DFStatement::Statement(Box::new(other)))
                    .await?;
                self.run_plan(plan, params, false).await
            }
        }
    }

    /// The queries a MERGE or `INSERT … ON CONFLICT` stands for and its command tag, or
    /// `None` for an `INSERT … ON CONFLICT DO NOTHING` that is a plain INSERT.
    async fn merge_queries(
        &self,
        statement: &Statement,
    ) -> Result<Option<(MergeQueries, &'static str)>, SqlError> {
        match statement {
            Statement::Merge(m) => {
                let columns = self.table_columns(&crate::merge::target(m)?).await?;
                Ok(Some((crate::merge::queries(m, &columns)?, "MERGE")))
            }
            Statement::Insert(insert) => {
                let TableObject::TableName(name) = &insert.table else {
                    return Err(SqlError::not_supported(
                        "INSERT INTO a table function is not supported",
                    ));
                };
                let columns = self.table_columns(name).await?;
                Ok(crate::merge::on_conflict(insert, &columns)?.map(|q| (q, "INSERT")))
            }
            _ => Err(SqlError::not_supported("this statement is not a MERGE")),
        }
    }

    /// An `INSERT … ON CONFLICT` planned as the plain INSERT of the same rows.
    async fn plan_plain_insert(&self, insert: &Insert) -> Result<LogicalPlan, SqlError> {
        let mut insert = insert.clone();
        insert.on = None;
        self.plan_named(DFStatement::Statement(Box::new(Statement::Insert(insert))))
            .await
    }

    /// The column names of a table, in order.
    async fn table_columns(&self, name: &ObjectName) -> Result<Vec<String>, SqlError> {
        let provider = self
            .engine
            .ctx()
            .table_provider(object_name_to_ref(name))
            .await?;
        Ok(provider
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect())
    }

    /// The planned queries of a MERGE (see `merge`).
    async fn plan_merge(&self, queries: &MergeQueries) -> Result<MergePlans, SqlError> {
        let kept = self.plan_merge_query(&queries.kept).await?;
        let inserted = match &queries.inserted {
            Some(sql) => Some(self.plan_merge_query(sql).await?),
            None => None,
        };
        Ok(MergePlans {
            kept,
            fold: queries.fold,
            inserted,
        })
    }

    async fn plan_merge_query(&self, sql: &str) -> Result<LogicalPlan, SqlError> {
        let statement =
            datafusion::sql::sqlparser::parser::Parser::parse_sql(&PostgreSqlDialect {}, sql)
                .map_err(|e| SqlError::syntax(format!("MERGE: {e}")))?
                .pop()
                .ok_or_else(|| SqlError::syntax("MERGE: an empty query"))?;
        self.plan(statement).await
    }

    async fn merge(
        &self,
        queries: MergeQueries,
        tag: &'static str,
        params: Option<ParamValues>,
    ) -> Result<StatementResult, SqlError> {
        let mut plans = self.plan_merge(&queries).await?;
        if let Some(p) = &params {
            let bind = |plan: LogicalPlan| -> Result<LogicalPlan, SqlError> {
                Ok(flashsql_udfs::relation::parameters::bind(
                    plan.replace_params_with_values(p)?,
                    p,
                )?)
            };
            plans.kept = bind(plans.kept)?;
            plans.inserted = plans.inserted.map(bind).transpose()?;
        }
        let target = object_name_to_ref(&queries.target);
        Ok(self.engine.merge(&target, plans, tag).await?.into())
    }

    async fn run_plan(
        &self,
        plan: LogicalPlan,
        params: Option<ParamValues>,
        temporary: bool,
    ) -> Result<StatementResult, SqlError> {
        let plan = bind(plan, params)?;
        Ok(self.engine.execute_plan(plan, temporary).await?.into())
    }

    fn set(&self, set: Set) -> Result<StatementResult, SqlError> {
        match set {
            Set::SingleAssignment {
                variable, values, ..
            } => {
                let name = canonical(&variable.to_string());
                let value = set_value_text(&values);
                if name.starts_with("datafusion.") {
                    check_range(&name, &value)?;
                    let state = self.engine.ctx().state_ref();
                    let mut guard = state.write();
                    guard
                        .config_mut()
                        .options_mut()
                        .set(&name, &value)
                        .map_err(|e| invalid_setting(&name, &value, &e))?;
                } else if name == "statement_timeout"
                    && crate::settings::parse_duration_ms(&value).is_none()
                {
                    return Err(SqlError::coded(
                        "22023",
                        format!("invalid value for parameter \"statement_timeout\": \"{value}\""),
                    ));
                }
                let value = if value.eq_ignore_ascii_case("default") {
                    self.settings.reset(&name);
                    return Ok(command("SET"));
                } else {
                    value
                };
                self.settings.set(&name, &value);
                Ok(command("SET"))
            }
            Set::SetTimeZone { value, .. } => {
                self.settings.set("timezone", &set_value_text(&[value]));
                Ok(command("SET"))
            }
            Set::SetNames { charset_name, .. } => {
                self.settings.set("client_encoding", &charset_name.value);
                Ok(command("SET"))
            }
            Set::SetTransaction { modes, session, .. } => {
                if let Some(read_only) = crate::read_only::access_mode(&modes) {
                    let value = if read_only { "on" } else { "off" };
                    // SET SESSION CHARACTERISTICS AS TRANSACTION … sets the default.
                    let name = if session {
                        "default_transaction_read_only"
                    } else {
                        "transaction_read_only"
                    };
                    self.settings.set(name, value);
                }
                Ok(command("SET"))
            }
            // Roles, session authorisation: accepted; there is one user.
            _ => Ok(command("SET")),
        }
    }

    fn show(&self, name: &str) -> Result<StatementResult, SqlError> {
        if name == "all" {
            let all = self.settings.all();
            let schema = Arc::new(Schema::new(vec![
                Field::new("name", DataType::Utf8, true),
                Field::new("setting", DataType::Utf8, true),
                Field::new("description", DataType::Utf8, true),
            ]));
            let col = |f: fn(&(String, String, String)) -> &String| {
                Arc::new(StringArray::from_iter_values(all.iter().map(f)))
                    as datafusion::arrow::array::ArrayRef
            };
            let batch = RecordBatch::try_new(
                schema.clone(),
                vec![col(|r| &r.0), col(|r| &r.1), col(|r| &r.2)],
            )?;
            return Ok(StatementResult::Batches(schema, vec![batch]));
        }
        if name.starts_with("datafusion.") {
            let state = self.engine.ctx().state();
            let entry = state
                .config_options()
                .entries()
                .into_iter()
                .find(|e| e.key == name)
                .ok_or_else(|| {
                    SqlError::coded(
                        "42704",
                        format!("unrecognized configuration parameter \"{name}\""),
                    )
                })?;
            return one_text_column(name, vec![entry.value.unwrap_or_default()]);
        }
        match self.settings.get(name) {
            Some(v) => one_text_column(name, vec![v]),
            None => Err(SqlError::coded(
                "42704",
                format!("unrecognized configuration parameter \"{name}\""),
            )),
        }
    }

    async fn copy(
        &self,
        source: CopySource,
        to: bool,
        target: CopyTarget,
        format: CopyFormat,
    ) -> Result<StatementResult, SqlError> {
        match (to, target) {
            (false, CopyTarget::Stdin) => {
                let CopySource::Table {
                    table_name,
                    columns,
                } = source
                else {
                    return Err(SqlError::syntax("COPY FROM needs a table, not a query"));
                };
                let table = object_name_to_ref(&table_name);
                let provider = self.engine.ctx().table_provider(table.clone()).await?;
                let table_schema = provider.schema();
                let columns = if columns.is_empty() {
                    table_schema.clone()
                } else {
                    let fields = columns
                        .iter()
                        .map(|c| {
                            table_schema
                                .field_with_name(&c.value)
                                .cloned()
                                .map_err(|_| {
                                    SqlError::coded(
                                        "42703",
                                        format!(
                                            "column \"{}\" of relation \"{}\" does not exist",
                                            c.value,
                                            table.table()
                                        ),
                                    )
                                })
                        })
                        .collect::<Result<Vec<_>, _>>()?;
                    Arc::new(Schema::new(fields))
                };
                Ok(StatementResult::CopyIn(CopyIn {
                    table,
                    columns,
                    table_schema,
                    format,
                }))
            }
            (true, CopyTarget::Stdout) => {
                let df = match source {
                    CopySource::Table {
                        table_name,
                        columns,
                    } => {
                        let df = self
                            .engine
                            .ctx()
                            .table(object_name_to_ref(&table_name))
                            .await?;
                        if columns.is_empty() {
                            df
                        } else {
                            let names: Vec<&str> =
                                columns.iter().map(|c| c.value.as_str()).collect();
                            df.select_columns(&names)?
                        }
                    }
                    CopySource::Query(q) => {
                        let plan = self.plan(Statement::Query(q)).await?;
                        self.engine.ctx().execute_logical_plan(plan).await?
                    }
                };
                Ok(StatementResult::CopyOut(df, format))
            }
            (_, CopyTarget::File { .. }) | (_, CopyTarget::Program { .. }) => {
                Err(SqlError::with_hint(
                    "0A000",
                    "COPY to or from a server file or program is not supported",
                    "use COPY … FROM STDIN / TO STDOUT (psql: \\copy), or CREATE EXTERNAL TABLE … LOCATION for files",
                ))
            }
            _ => Err(SqlError::syntax(
                "COPY FROM needs STDIN and COPY TO needs STDOUT",
            )),
        }
    }

    /// Loads the data of a COPY FROM STDIN: all rows in one atomic append, or none.
    pub async fn finish_copy_in(&self, copy: &CopyIn, data: &[u8]) -> Result<u64, SqlError> {
        let batch = crate::copy::decode(data, &copy.format, &copy.columns, copy.table.table())?;
        let rows = batch.num_rows() as u64;
        if rows == 0 {
            return Ok(0);
        }
        let batch = crate::copy::widen(&batch, &copy.table_schema)?;
        self.engine
            .ctx()
            .read_batch(batch)?
            .write_table(&copy.table.to_string(), DataFrameWriteOptions::new())
            .await?;
        Ok(rows)
    }
}

/// The row `load_file(…)` answers: the table it created and its row count.
fn load_result_schema() -> SchemaRef {
    Arc::new(Schema::new(vec![
        Field::new("table_name", DataType::Utf8, false),
        Field::new("rows", DataType::Int64, false),
    ]))
}

enum Utility {
    Show(String),
    ShowAll,
    /// Touches session state only (SET, BEGIN, DISCARD…).
    Session,
    /// Handled here, but reads or writes tables (COPY, ALTER TABLE, COMMENT, cursors).
    Catalog,
    /// `FETCH … FROM cursor`: rows with the cursor's columns.
    Fetch(String),
    /// `SELECT * FROM load_file(…)`: creates a table (see `load_call`).
    Load,
    /// `DECLARE … CURSOR FOR query`: the query's parameters, no rows.
    Declare(Box<datafusion::sql::sqlparser::ast::Query>),
    /// `MERGE`, `INSERT … ON CONFLICT`: planned as queries (see `merge`).
    Merge,
    Planned,
}

/// The SQL statement inside a parsed statement, if it is one (not DataFusion's own).
fn statement_ref(s: &DFStatement) -> Result<&Statement, SqlError> {
    match s {
        DFStatement::Statement(s) => Ok(s.as_ref()),
        _ => Err(SqlError::not_supported("this statement is not a MERGE")),
    }
}

/// The types of a plan's parameters `$1…$n`, in order (None where nothing fixes one).
fn parameter_types(plan: &LogicalPlan) -> Result<Vec<Option<DataType>>, SqlError> {
    let mut params = plan.get_parameter_types()?;
    // `$1::bigint` makes $1 a bigint, as in PostgreSQL (DataFusion leaves it untyped).
    for (k, t) in cast_parameter_types(plan)? {
        let known = params.entry(k).or_insert(None);
        if known.is_none() {
            *known = Some(t);
        }
    }
    // Parameters inside a relation function's input subquery, too.
    for (k, t) in flashsql_udfs::relation::parameters::types(plan)? {
        let known = params.entry(k).or_insert(None);
        if known.is_none() {
            *known = t;
        }
    }
    let mut ordered: Vec<(usize, Option<DataType>)> = params
        .into_iter()
        .filter_map(|(k, v)| {
            k.trim_start_matches('$')
                .parse::<usize>()
                .ok()
                .map(|i| (i, v))
        })
        .collect();
    ordered.sort_by_key(|(i, _)| *i);
    let n = ordered.last().map(|(i, _)| *i).unwrap_or(0);
    let mut types = vec![None; n];
    for (i, t) in ordered {
        if i >= 1 {
            types[i - 1] = t;
        }
    }
    Ok(types)
}

/// The types parameters are cast to where they stand alone in a cast (`$1::bigint`).
fn cast_parameter_types(
    plan: &LogicalPlan,
) -> Result<std::collections::HashMap<String, DataType>, SqlError> {
    use datafusion::common::tree_node::{TreeNode, TreeNodeRecursion};
    use datafusion::logical_expr::{Cast, Expr, TryCast};
    let mut found = std::collections::HashMap::new();
    plan.apply_with_subqueries(|node| {
        node.apply_expressions(|e| {
            e.apply(|e| {
                if let Expr::Cast(Cast { expr, field }) | Expr::TryCast(TryCast { expr, field }) = e
                    && let Expr::Placeholder(p) = expr.as_ref()
                    && p.field.is_none()
                {
                    found
                        .entry(p.id.clone())
                        .or_insert_with(|| field.data_type().clone());
                }
                Ok(TreeNodeRecursion::Continue)
            })
        })
    })?;
    Ok(found)
}

/// `plan` with a prepared statement's bound values in place of its parameters.
fn bind(plan: LogicalPlan, params: Option<ParamValues>) -> Result<LogicalPlan, SqlError> {
    Ok(match params {
        Some(p) => {
            flashsql_udfs::relation::parameters::bind(plan.replace_params_with_values(&p)?, &p)?
        }
        None => plan,
    })
}

/// Whether a statement is handled here rather than planned by DataFusion.
fn utility_kind(s: &Statement) -> Utility {
    match s {
        Statement::Query(q) if crate::load_call::parse(q).is_some() => Utility::Load,
        Statement::ShowVariable { variable } => {
            let name = variable_name(variable);
            if name == "all" {
                Utility::ShowAll
            } else {
                Utility::Show(name)
            }
        }
        Statement::Set(_)
        | Statement::Reset(_)
        | Statement::StartTransaction { .. }
        | Statement::Commit { .. }
        | Statement::Rollback { .. }
        | Statement::Savepoint { .. }
        | Statement::ReleaseSavepoint { .. }
        | Statement::Discard { .. }
        | Statement::Deallocate { .. }
        | Statement::Analyze(_)
        | Statement::Vacuum(_) => Utility::Session,
        Statement::Comment { .. }
        | Statement::AlterTable(_)
        | Statement::Copy { .. }
        | Statement::Close { .. } => Utility::Catalog,
        Statement::Declare { stmts } => match stmts.as_slice() {
            [d] => match &d.for_query {
                Some(q) => Utility::Declare(q.clone()),
                None => Utility::Catalog,
            },
            _ => Utility::Catalog,
        },
        Statement::Fetch { name, .. } => Utility::Fetch(name.value.clone()),
        Statement::Merge(_) | Statement::Insert(Insert { on: Some(_), .. }) => Utility::Merge,
        _ => Utility::Planned,
    }
}

/// The form of a statement DataFusion can plan (temporary tables are planned as ordinary
/// ones and kept in the session by the executor).
fn planned_form(s: DFStatement) -> DFStatement {
    match s {
        DFStatement::Statement(inner) => match *inner {
            Statement::CreateTable(mut ct) => {
                ct.temporary = false;
                // Storage parameters are the executor's (see `storage_params`).
                ct.table_options = CreateTableOptions::None;
                DFStatement::Statement(Box::new(Statement::CreateTable(ct)))
            }
            other => DFStatement::Statement(Box::new(other)),
        },
        other => other,
    }
}

/// The parameter a `SHOW` names: dotted for DataFusion's options, words joined by spaces for
/// PostgreSQL's multi-word names (`TRANSACTION ISOLATION LEVEL`).
fn variable_name(idents: &[datafusion::sql::sqlparser::ast::Ident]) -> String {
    let parts: Vec<&str> = idents.iter().map(|i| i.value.as_str()).collect();
    let sep = if parts
        .first()
        .is_some_and(|p| p.eq_ignore_ascii_case("datafusion"))
    {
        "."
    } else {
        " "
    };
    canonical(&parts.join(sep))
}

/// DataFusion's refusal of a `SET datafusion.…`: an unknown name is 42704 and a value of the
/// wrong kind 22023, as PostgreSQL answers for its own parameters.
/// DataFusion options that size what a statement allocates per partition or batch, with the
/// range a client may set them to: beyond it one session could exhaust the server's memory
/// outside the pool (`target_partitions = 100000000000` did, found by the SQL fuzzer).
const BOUNDED_OPTIONS: &[(&str, u64, u64)] = &[
    ("datafusion.execution.target_partitions", 1, 256),
    ("datafusion.execution.batch_size", 1, 1 << 20),
    ("datafusion.execution.planning_concurrency", 1, 256),
    ("datafusion.execution.meta_fetch_concurrency", 1, 256),
    ("datafusion.execution.minimum_parallel_output_files", 1, 256),
    (
        "datafusion.execution.max_buffered_batches_per_output_file",
        1,
        1024,
    ),
    (
        "datafusion.execution.soft_max_rows_per_output_file",
        1,
        1 << 30,
    ),
];

/// 22023 for a value outside an option's range (as PostgreSQL answers for its parameters).
fn check_range(name: &str, value: &str) -> Result<(), SqlError> {
    let Some((_, min, max)) = BOUNDED_OPTIONS.iter().find(|(n, _, _)| *n == name) else {
        return Ok(());
    };
    let v = value.trim().trim_matches('\'');
    match v.parse::<i128>() {
        Ok(n) if n >= i128::from(*min) && n <= i128::from(*max) => Ok(()),
        Ok(_) => Err(SqlError::coded(
            "22023",
            format!("{v} is outside the valid range for parameter \"{name}\" ({min} .. {max})"),
        )),
        // Not a number: DataFusion's own parsing gives the error.
        Err(_) => Ok(()),
    }
}

fn invalid_setting(name: &str, value: &str, e: &datafusion::error::DataFusionError) -> SqlError {
    let detail = e.strip_backtrace();
    if detail.contains("not found") {
        SqlError::coded(
            "42704",
            format!("unrecognized configuration parameter \"{name}\""),
        )
    } else {
        SqlError::coded(
            "22023",
            format!("invalid value for parameter \"{name}\": \"{value}\" ({detail})"),
        )
    }
}
