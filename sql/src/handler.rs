//! The pgwire handlers of one connection: simple and extended query protocol, COPY, cancel.
//!
//! Each connection gets its own [`Connection`] and thus its own [`PgSession`]: settings and
//! temporary tables never leak between clients. Every statement runs under a cancellation
//! token that a cancel request or `statement_timeout` fires; the token also guards the row
//! stream, so a long result stops mid-way.

use std::fmt::Debug;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};

use async_trait::async_trait;
use datafusion::arrow::array::RecordBatch;
use datafusion::arrow::datatypes::{DataType, SchemaRef};
use datafusion::common::ParamValues;
use datafusion::error::DataFusionError;
use futures::{Sink, SinkExt, Stream, StreamExt, stream};
use pgwire::api::auth::StartupHandler;
use pgwire::api::cancel::CancelHandler;
use pgwire::api::copy::CopyHandler;
use pgwire::api::portal::{Format, Portal};
use pgwire::api::query::{ExtendedQueryHandler, SimpleQueryHandler};
use pgwire::api::results::{CopyResponse, FieldInfo, QueryResponse, Response, Tag};
use pgwire::api::stmt::{QueryParser, StoredStatement};
use pgwire::api::store::{Entry, PortalStore};
use pgwire::api::{
    ClientInfo, ClientPortalStore, DEFAULT_NAME, ErrorHandler, PgWireServerHandlers, Type,
};
use pgwire::error::{ErrorInfo, PgWireError, PgWireResult};
use pgwire::messages::PgWireBackendMessage;
use pgwire::messages::cancel::CancelRequest;
use pgwire::messages::copy::{CopyData, CopyDone, CopyFail};
use pgwire::messages::extendedquery::{Bind, BindComplete, Execute, Parse, ParseComplete};
use pgwire::messages::response::TransactionStatus;
use pgwire::messages::simplequery::Query;
use pgwire::types::format::FormatOptions;
use tokio::sync::OnceCell;
use tokio_util::sync::CancellationToken;
use tracing::{debug, warn};

use crate::auth::Startup;
use crate::copy::CopyOutEncoder;
use crate::errors::{SqlError, classify};
use crate::portal_stream;
use crate::protocol_checks;
use crate::server::Shared;
use crate::session::{CopyIn, PgSession, Prepared, StatementResult};
use crate::users::Role;

/// Bytes a single COPY FROM STDIN may buffer before it is refused.
const MAX_COPY_BYTES: usize = 1 << 30;

/// Why statements end when the server shuts down (57P01).
pub const TERMINATING: &str = "terminating connection due to administrator command";

/// The running statement's cancellation state.
#[derive(Clone)]
struct Guard {
    token: CancellationToken,
    timed_out: Arc<AtomicBool>,
    /// The server is shutting down: the connection's flag, seen by each of its statements.
    terminating: Arc<AtomicBool>,
}

impl Guard {
    fn error(&self) -> SqlError {
        if self.terminating.load(Ordering::SeqCst) {
            SqlError::coded("57P01", TERMINATING)
        } else if self.timed_out.load(Ordering::SeqCst) {
            SqlError::Timeout
        } else {
            SqlError::Cancelled
        }
    }

    /// Runs `fut` unless the statement is cancelled first.
    async fn run<T>(&self, fut: impl Future<Output = Result<T, SqlError>>) -> Result<T, SqlError> {
        tokio::select! {
            r = fut => r,
            _ = self.token.cancelled() => Err(self.error()),
        }
    }

    /// Ends `s` with a 57014 error as soon as the statement is cancelled.
    fn stream<T: Send + 'static>(
        &self,
        s: impl Stream<Item = PgWireResult<T>> + Send + 'static,
    ) -> impl Stream<Item = PgWireResult<T>> + Send + 'static {
        let guard = self.clone();
        let tail = self.clone();
        s.take_until(guard.token.cancelled_owned())
            .map(Some)
            .chain(stream::once(async move {
                if tail.token.is_cancelled() {
                    Some(Err(tail.error().into()))
                } else {
                    None
                }
            }))
            .filter_map(|x| async move { x })
    }
}

/// One client connection.
pub struct Connection {
    me: std::sync::Weak<Connection>,
    shared: Arc<Shared>,
    session: OnceCell<Arc<PgSession>>,
    current: Mutex<Guard>,
    /// Set when the server shuts down: this connection's statements end with 57P01.
    terminating: Arc<AtomicBool>,
    /// Cancelled when the server shuts down: the message loop then says why (FATAL 57P01,
    /// inside TLS where there is TLS) and closes.
    pub shutdown: CancellationToken,
    copy: Mutex<Option<(CopyIn, Vec<u8>)>>,
    registered: Mutex<Option<i32>>,
    startup: Arc<Startup>,
}

impl Connection {
    pub fn new(shared: Arc<Shared>) -> Arc<Self> {
        let startup = Arc::new(Startup::new(&shared));
        let terminating = Arc::new(AtomicBool::new(false));
        Arc::new_cyclic(|me| Self {
            me: me.clone(),
            shared,
            session: OnceCell::new(),
            current: Mutex::new(Guard {
                token: CancellationToken::new(),
                timed_out: Arc::new(AtomicBool::new(false)),
                terminating: terminating.clone(),
            }),
            terminating,
            shutdown: CancellationToken::new(),
            copy: Mutex::new(None),
            registered: Mutex::new(None),
            startup,
        })
    }

    async fn session<C: ClientInfo>(
        self: &Arc<Self>,
        client: &C,
    ) -> Result<Arc<PgSession>, SqlError> {
        if let Ok(mut reg) = self.registered.lock()
            && reg.is_none()
        {
            let (pid, key) = client.pid_and_secret_key();
            self.shared.cancels.register(pid, key, Arc::downgrade(self));
            *reg = Some(pid);
        }
        self.session
            .get_or_try_init(|| async {
                // The client got this far: it logged in.
                self.shared.backoff.succeeded(client.socket_addr().ip());
                let md = client.metadata();
                let user = md.get("user").map(String::as_str).unwrap_or("flashsql");
                let app = md.get("application_name").map(String::as_str);
                let session =
                    PgSession::new(&self.shared.engine, self.shared.parser.clone(), user, app)?;
                Ok(Arc::new(match self.shared.logins.role(user) {
                    Role::ReadOnly => session.reading_only(user),
                    Role::ReadWrite => session,
                }))
            })
            .await
            .cloned()
    }

    /// Runs a statement on the execution runtime.
    async fn execute(
        &self,
        session: &Arc<PgSession>,
        statement: datafusion::sql::parser::Statement,
        params: Option<ParamValues>,
    ) -> Result<StatementResult, SqlError> {
        session.check_block(&statement)?;
        if PgSession::is_utility(&statement) {
            return session.execute(statement, params).await;
        }
        let s = session.clone();
        self.shared
            .engine
            .executor()
            .run(async move { s.execute(statement, params).await })
            .await?
    }

    /// Runs a prepared statement: a point lookup from memory where it can be answered so
    /// (see [`crate::point_lookup`]), else as any statement.
    async fn execute_prepared(
        &self,
        session: &Arc<PgSession>,
        prepared: &Prepared,
        statement: &datafusion::sql::parser::Statement,
        params: Option<ParamValues>,
    ) -> Result<StatementResult, SqlError> {
        if let (Some(lookup), Some(values)) = (&prepared.lookup, &params) {
            session.check_block(statement)?;
            if let Some(result) = session.point_lookup(lookup, values).await {
                return Ok(result);
            }
        }
        self.execute(session, statement.clone(), params).await
    }

    /// Starts a statement: a fresh token, armed with `statement_timeout` if set.
    fn begin(&self, session: &PgSession) -> Guard {
        let guard = Guard {
            token: CancellationToken::new(),
            timed_out: Arc::new(AtomicBool::new(false)),
            terminating: self.terminating.clone(),
        };
        if let Some(timeout) = session.settings().statement_timeout() {
            let g = guard.clone();
            tokio::spawn(async move {
                tokio::select! {
                    _ = tokio::time::sleep(timeout) => {
                        g.timed_out.store(true, Ordering::SeqCst);
                        g.token.cancel();
                    }
                    _ = g.token.cancelled() => {}
                }
            });
        }
        if let Ok(mut cur) = self.current.lock() {
            *cur = guard.clone();
        }
        guard
    }

    /// Cancels the running statement (a cancel request from another connection, or the
    /// client went away).
    pub fn cancel(&self) {
        if let Ok(cur) = self.current.lock() {
            cur.token.cancel();
        }
    }

    /// Ends the running statement with 57P01 (the server is shutting down); later ones too.
    pub fn terminate(&self) {
        self.terminating.store(true, Ordering::SeqCst);
        self.cancel();
        self.shutdown.cancel();
    }

    /// Turns a statement's result into a wire response. `materialise` computes the rows now
    /// (for all but the last statement of a multi-statement query, so later statements see
    /// a consistent order of effects).
    async fn respond<C: ClientInfo>(
        &self,
        client: &C,
        result: StatementResult,
        guard: &Guard,
        format: &Format,
        materialise: bool,
    ) -> Result<Response, SqlError> {
        let options = Arc::new(FormatOptions::from_client_metadata(client.metadata()));
        match result {
            StatementResult::Rows(df) => {
                let schema: SchemaRef = Arc::new(df.schema().as_arrow().clone());
                let batches = self.shared.engine.executor().stream(df);
                if materialise {
                    let batches = guard
                        .run(async {
                            let all: Vec<_> = batches.collect().await;
                            Ok(all.into_iter().collect::<Result<Vec<_>, _>>()?)
                        })
                        .await?;
                    rows_response(
                        schema,
                        stream::iter(batches.into_iter().map(Ok)),
                        format,
                        options,
                        guard,
                    )
                } else {
                    rows_response(schema, batches, format, options, guard)
                }
            }
            StatementResult::Batches(schema, batches) => rows_response(
                schema,
                stream::iter(batches.into_iter().map(Ok)),
                format,
                options,
                guard,
            ),
            StatementResult::Command { tag, rows } => {
                let mut t = Tag::new(&tag);
                if tag == "INSERT" {
                    t = t.with_oid(0);
                }
                if let Some(n) = rows {
                    t = t.with_rows(n as usize);
                }
                Ok(Response::Execution(t))
            }
            StatementResult::TransactionStart(tag) => Ok(Response::TransactionStart(Tag::new(tag))),
            StatementResult::TransactionEnd(tag) => Ok(Response::TransactionEnd(Tag::new(tag))),
            StatementResult::CopyIn(copy) => {
                let columns = copy.columns.fields().len();
                if let Ok(mut slot) = self.copy.lock() {
                    *slot = Some((copy, Vec::new()));
                }
                Ok(Response::CopyIn(CopyResponse::new(
                    0,
                    columns,
                    stream::empty(),
                )))
            }
            StatementResult::CopyOut(df, fmt) => {
                let schema = df.schema().as_arrow().clone();
                let fields = Arc::new(arrow_pg::datatypes::arrow_schema_to_pg_fields(
                    &schema,
                    &Format::UnifiedText,
                    Some(options),
                )?);
                let columns = fields.len();
                let batches = self.shared.engine.executor().stream(df);
                let encoder = Arc::new(Mutex::new(CopyOutEncoder::new(fields, &fmt)));
                let per_batch = encoder.clone();
                let data = batches
                    .map(move |b| -> Vec<PgWireResult<CopyData>> {
                        let encoded = b.map_err(SqlError::from).and_then(|b| {
                            per_batch
                                .lock()
                                .map_err(|_| {
                                    SqlError::coded("XX000", "COPY encoder lock poisoned")
                                })?
                                .encode(&b)
                        });
                        match encoded {
                            Ok(rows) => rows.into_iter().map(Ok).collect(),
                            Err(e) => vec![Err(e.into())],
                        }
                    })
                    .flat_map(stream::iter)
                    // A header with no rows after it still goes out on its own.
                    .chain(
                        stream::once(async move {
                            encoder
                                .lock()
                                .ok()
                                .and_then(|mut e| e.take_header())
                                .map(Ok)
                        })
                        .filter_map(|x| async move { x }),
                    );
                Ok(Response::CopyOut(CopyResponse::new(
                    0,
                    columns,
                    guard.stream(data),
                )))
            }
        }
    }
}

impl Drop for Connection {
    fn drop(&mut self) {
        if let Ok(reg) = self.registered.lock()
            && let Some(pid) = *reg
        {
            self.shared.cancels.unregister(pid);
        }
    }
}

fn rows_response(
    schema: SchemaRef,
    batches: impl Stream<Item = datafusion::error::Result<RecordBatch>> + Send + 'static,
    format: &Format,
    options: Arc<FormatOptions>,
    guard: &Guard,
) -> Result<Response, SqlError> {
    let fields = Arc::new(arrow_pg::datatypes::arrow_schema_to_pg_fields(
        &schema,
        format,
        Some(options),
    )?);
    let f = fields.clone();
    let times = crate::pg_text::time_columns(&fields);
    let described = schema.clone();
    let rows = batches
        .map(move |b| {
            let b = b
                .and_then(|b| as_described(&described, b))
                .and_then(|b| crate::sendable::values_fit(&b).map(|()| b));
            let it: Box<
                dyn Iterator<Item = PgWireResult<pgwire::messages::data::DataRow>> + Send + Sync,
            > = match (b, &times) {
                (Ok(b), None) => arrow_pg::encode_recordbatch(f.clone(), b),
                (Ok(b), Some(columns)) => {
                    let columns = columns.clone();
                    Box::new(arrow_pg::encode_recordbatch(f.clone(), b).map(move |row| {
                        row.map(|row| crate::pg_text::trim_time_fractions(&columns, row))
                    }))
                }
                (Err(e), _) => Box::new(std::iter::once(Err(PgWireError::from(SqlError::from(e))))),
            };
            stream::iter(it)
        })
        .flatten();
    Ok(Response::Query(QueryResponse::new(
        fields,
        guard.stream(rows),
    )))
}

/// Array parameters in the statement's own element type. A client describes an array by
/// its values — psycopg sends `[1, 2]` as `int2[]`, `[1.5]` as `float8[]` — and the value
/// takes the place of the parameter as sent, so an INSERT into an `int[]` column would fail
/// with a list of the wrong element type where PostgreSQL casts it. A value that does not
/// cast is left as it came, for the statement to report.
fn as_inferred(values: ParamValues, inferred: &[Option<&DataType>]) -> ParamValues {
    use datafusion::common::ScalarValue;
    let ParamValues::List(list) = values else {
        return values;
    };
    let list = list
        .into_iter()
        .zip(inferred.iter().copied().chain(std::iter::repeat(None)))
        .map(|(mut param, want)| {
            if let Some(want) = want
                && matches!(param.value, ScalarValue::List(_))
                && param.value.data_type() != *want
                && let Ok(cast) = param.value.cast_to(want)
            {
                param.value = cast;
            }
            param
        })
        .collect();
    ParamValues::List(list)
}

/// A batch whose columns are not of the types the result was described with is cast to them.
/// DataFusion's optimizer can change an expression's type after the plan's schema was taken
/// (seen with `make_array` over a `CASE` of an int8 subquery and the unsigned `cardinality`:
/// described as int8[], produced as numeric[]); the encoder would then fail (XX000). A value
/// the described type cannot hold fails the statement with the cast's error instead.
fn as_described(schema: &SchemaRef, batch: RecordBatch) -> datafusion::error::Result<RecordBatch> {
    use datafusion::arrow::compute::{CastOptions, cast_with_options};
    use datafusion::arrow::datatypes::{Field, Schema};
    let differs = |i: usize| {
        schema
            .fields()
            .get(i)
            .is_some_and(|f| f.data_type() != batch.column(i).data_type())
    };
    if schema.fields().len() != batch.num_columns() || !(0..batch.num_columns()).any(differs) {
        return Ok(batch);
    }
    let options = CastOptions {
        safe: false,
        ..CastOptions::default()
    };
    let mut fields: Vec<Field> = Vec::with_capacity(batch.num_columns());
    let mut columns = Vec::with_capacity(batch.num_columns());
    for (i, column) in batch.columns().iter().enumerate() {
        let own = batch.schema().field(i).clone();
        if differs(i) {
            let target = schema.field(i).data_type();
            columns.push(cast_with_options(column, target, &options)?);
            fields.push(own.with_data_type(target.clone()));
        } else {
            columns.push(column.clone());
            fields.push(own);
        }
    }
    Ok(RecordBatch::try_new(
        Arc::new(Schema::new(fields)),
        columns,
    )?)
}

fn error_response(e: SqlError) -> Response {
    Response::Error(Box::new(e.into()))
}

#[async_trait]
impl SimpleQueryHandler for Connection {
    /// A query that is exactly `COMMIT` (or `END`) ends the block whether it succeeds or
    /// fails (a lost race gives 40001 and leaves the session idle, as in PostgreSQL). pgwire
    /// derives the status it reports from the status before the query and the responses, so
    /// starting from "idle" makes both outcomes report idle rather than "failed transaction".
    async fn on_query<C>(&self, client: &mut C, query: Query) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let text = query.query.trim().trim_end_matches(';').trim();
        if text.eq_ignore_ascii_case("commit") || text.eq_ignore_ascii_case("end") {
            client.set_transaction_status(TransactionStatus::Idle);
        }
        self._on_query(client, query).await
    }

    async fn do_query<C>(&self, client: &mut C, query: &str) -> PgWireResult<Vec<Response>>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        debug!(query, "simple query");
        let this = self.self_arc()?;
        let session = this.session(client).await?;
        let statements = match session.parse(query) {
            Ok(s) => s,
            Err(e) => return Ok(vec![error_response(e)]),
        };
        let n = statements.len();
        // A query of comments or semicolons only (`-- ping`, `;`: how pgx and lib/pq check
        // a connection) gets EmptyQueryResponse, as in PostgreSQL; nothing at all would
        // leave libpq without a result.
        if n == 0 {
            return Ok(vec![Response::EmptyQuery]);
        }
        let mut out = Vec::with_capacity(n);
        // Several statements outside a block run as one implicit transaction.
        if n > 1 {
            session.begin_implicit();
        }
        for (i, statement) in statements.into_iter().enumerate() {
            let guard = this.begin(&session);
            let result = guard.run(this.execute(&session, statement, None)).await;
            let response = match result {
                // Rows are read before the next statement runs, and before an implicit
                // transaction commits (so a failure there rolls it back).
                Ok(r) => {
                    let materialise = i + 1 < n || session.in_implicit();
                    this.respond(client, r, &guard, &Format::UnifiedText, materialise)
                        .await
                }
                Err(e) => Err(e),
            };
            match response {
                Ok(r) => out.push(r),
                Err(e) => {
                    statement_failed(client, &session);
                    out.push(error_response(e));
                    if session.end_implicit(false).await.is_ok() && !session.in_block() {
                        client.set_transaction_status(TransactionStatus::Idle);
                    }
                    return Ok(out);
                }
            }
            // After a COMMIT or ROLLBACK among them, the rest get a new one.
            if i + 1 < n && !session.in_block() {
                session.begin_implicit();
            }
        }
        if let Err(e) = session.end_implicit(true).await {
            out.push(error_response(e));
        }
        Ok(out)
    }
}

/// After a statement failed (in execution or while its rows were sent): an open block only
/// accepts its end now (25P02). Outside a block — a failed COMMIT has ended it, as in
/// PostgreSQL — the client must be told "idle", not "in a failed transaction": pgwire marks
/// any error inside a block as the latter, and drivers would then answer with savepoints or
/// ROLLBACK. (For the simple protocol pgwire reports what `on_query` set up instead.)
fn statement_failed<C: ClientInfo>(client: &mut C, session: &PgSession) {
    session.statement_failed();
    if !session.in_block() {
        client.set_transaction_status(TransactionStatus::Idle);
    }
}

/// Parses and describes statements for the extended protocol.
pub struct Parser {
    conn: std::sync::Weak<Connection>,
}

#[async_trait]
impl QueryParser for Parser {
    type Statement = Prepared;

    async fn parse_sql<C>(
        &self,
        client: &C,
        sql: &str,
        _types: &[Option<Type>],
    ) -> PgWireResult<Option<Prepared>>
    where
        C: ClientInfo + Unpin + Send + Sync,
    {
        let conn = self
            .conn
            .upgrade()
            .ok_or_else(|| PgWireError::from(SqlError::coded("08006", "connection closed")))?;
        let session = conn.session(client).await?;
        Ok(Some(session.prepare(sql).await?))
    }

    fn get_parameter_types(&self, stmt: &Prepared) -> PgWireResult<Vec<Type>> {
        stmt.param_types
            .iter()
            .map(|t| match t {
                Some(t) => arrow_pg::datatypes::into_pg_type(t),
                None => Ok(Type::UNKNOWN),
            })
            .collect()
    }

    fn get_result_schema(
        &self,
        stmt: &Prepared,
        column_format: Option<&Format>,
    ) -> PgWireResult<Vec<FieldInfo>> {
        match &stmt.columns {
            Some(schema) => arrow_pg::datatypes::arrow_schema_to_pg_fields(
                schema,
                column_format.unwrap_or(&Format::UnifiedText),
                None,
            ),
            None => Ok(vec![]),
        }
    }
}

impl Connection {
    /// The owning `Arc`: handlers are only reached through it, so this always succeeds
    /// while a handler runs.
    fn self_arc(&self) -> Result<Arc<Connection>, SqlError> {
        self.me
            .upgrade()
            .ok_or_else(|| SqlError::coded("08006", "connection closed"))
    }
}

#[async_trait]
impl ExtendedQueryHandler for Connection {
    type Statement = Prepared;
    type QueryParser = Parser;

    fn query_parser(&self) -> Arc<Parser> {
        Arc::new(Parser {
            conn: self.me.clone(),
        })
    }

    /// As the protocol library's, but a named statement is not silently replaced (42P05).
    async fn on_parse<C>(&self, client: &mut C, message: Parse) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if let Some(name) = message.name.as_deref() {
            let exists = client.portal_store().get_statement(name).is_some();
            protocol_checks::statement_name_free(name, exists)?;
        }
        let name = message
            .name
            .clone()
            .unwrap_or_else(|| DEFAULT_NAME.to_owned());
        match StoredStatement::parse(client, &message, self.query_parser()).await? {
            Some(stmt) => client.portal_store().put_statement(Arc::new(stmt)),
            None => client.portal_store().put_empty_statement(&name),
        }
        client
            .send(PgWireBackendMessage::ParseComplete(ParseComplete::new()))
            .await?;
        Ok(())
    }

    /// As the protocol library's, but a Bind must supply the statement's parameters and
    /// valid format codes (08P01, 22P03), as PostgreSQL requires.
    async fn on_bind<C>(&self, client: &mut C, message: Bind) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let statement_name = message.statement_name.as_deref().unwrap_or(DEFAULT_NAME);
        let portal_name = message.portal_name.as_deref().unwrap_or(DEFAULT_NAME);
        let shown = message.statement_name.as_deref().unwrap_or("");
        let supplied = message.parameters.len();
        protocol_checks::format_codes(&message.parameter_format_codes, supplied, "parameter")?;
        match client.portal_store().get_statement(statement_name) {
            Some(Entry::Value(statement)) => {
                let required = statement
                    .parameter_types
                    .len()
                    .max(statement.statement.param_types.len());
                protocol_checks::parameter_count(supplied, required, shown)?;
                let columns = statement
                    .statement
                    .columns
                    .as_ref()
                    .map_or(0, |c| c.fields().len());
                protocol_checks::format_codes(
                    &message.result_column_format_codes,
                    columns,
                    "result",
                )?;
                let portal = Portal::try_new(&message, statement)?;
                client.portal_store().put_portal(Arc::new(portal));
            }
            Some(Entry::Empty) => {
                protocol_checks::parameter_count(supplied, 0, shown)?;
                client.portal_store().put_empty_portal(portal_name);
            }
            None => return Err(PgWireError::StatementNotFound(statement_name.to_owned())),
        }
        client
            .send(PgWireBackendMessage::BindComplete(BindComplete::new()))
            .await?;
        Ok(())
    }

    /// As the protocol library's, after checking the row limit (a negative one is 08P01), but
    /// a portal run without a row limit streams its rows ([`portal_stream`]).
    async fn on_execute<C>(&self, client: &mut C, message: Execute) -> PgWireResult<()>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore<Statement = Self::Statement>,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        protocol_checks::max_rows(message.max_rows)?;
        let portal_name = message.name.as_deref().unwrap_or(DEFAULT_NAME);
        let portal = match client.portal_store().get_portal(portal_name) {
            Some(Entry::Value(p)) => Some(p),
            _ => None,
        };
        let declared = portal
            .as_ref()
            .and_then(|p| declared_cursor(&p.statement.statement));
        match portal {
            Some(p) if message.max_rows == 0 && portal_stream::not_started(&p).await => {
                portal_stream::execute_unlimited(self, client, p).await?
            }
            _ => self._on_execute(client, message).await?,
        }
        // A declared cursor is also a portal of its name, as in PostgreSQL: drivers describe
        // it to learn its columns before they FETCH (psycopg's named cursors).
        if let Some(name) = declared {
            let this = self.self_arc()?;
            let session = this.session(client).await?;
            if let Ok(columns) = session.cursor_columns(&name).await {
                let fetch = Prepared {
                    sql: format!("FETCH ALL FROM \"{name}\""),
                    statement: None,
                    param_types: vec![],
                    columns: Some(columns),
                    lookup: None,
                };
                let stored = StoredStatement::new(name.clone(), fetch, vec![]);
                client
                    .portal_store()
                    .put_portal(Arc::new(Portal::new_cursor(name, Arc::new(stored))));
            }
        }
        Ok(())
    }

    async fn do_query<C>(
        &self,
        client: &mut C,
        portal: &Portal<Prepared>,
        _max_rows: usize,
    ) -> PgWireResult<Response>
    where
        C: ClientInfo + ClientPortalStore + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::PortalStore: PortalStore,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let this = self.self_arc()?;
        let prepared = &portal.statement.statement;
        let Some(statement) = prepared.statement.as_ref() else {
            return Ok(Response::EmptyQuery);
        };
        debug!(sql = %prepared.sql, "extended query");
        let session = this.session(client).await?;
        let params = if portal.parameter_len() > 0 {
            let inferred: Vec<Option<&DataType>> =
                prepared.param_types.iter().map(|t| t.as_ref()).collect();
            let server: Vec<Type> = self.query_parser().get_parameter_types(prepared)?;
            let server_refs: Vec<Option<&Type>> = server.iter().map(Some).collect();
            let values: ParamValues =
                arrow_pg::datatypes::df::deserialize_parameters_with_server_types(
                    portal,
                    &inferred,
                    &server_refs,
                )?;
            Some(as_inferred(values, &inferred))
        } else {
            None
        };
        let guard = this.begin(&session);
        let response = match guard
            .run(this.execute_prepared(&session, prepared, statement, params))
            .await
        {
            Ok(result) => {
                this.respond(client, result, &guard, &portal.result_column_format, false)
                    .await
            }
            Err(e) => Err(e),
        };
        if response.is_err() {
            statement_failed(client, &session);
        }
        Ok(response?)
    }
}

#[async_trait]
impl CopyHandler for Connection {
    async fn on_copy_data<C>(&self, _client: &mut C, copy_data: CopyData) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let mut slot = self.copy.lock().map_err(|_| -> PgWireError {
            SqlError::coded("XX000", "copy state lock poisoned").into()
        })?;
        let Some((_, buf)) = slot.as_mut() else {
            return Err(SqlError::coded("08P01", "unexpected COPY data").into());
        };
        if buf.len() + copy_data.data.len() > MAX_COPY_BYTES {
            *slot = None;
            return Err(SqlError::coded(
                "54000",
                "COPY input exceeds 1 GiB: split it into several COPY statements",
            )
            .into());
        }
        buf.extend_from_slice(&copy_data.data);
        Ok(())
    }

    async fn on_copy_done<C>(&self, client: &mut C, _done: CopyDone) -> PgWireResult<()>
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        let taken = self.copy.lock().ok().and_then(|mut s| s.take());
        let Some((copy, data)) = taken else {
            return Err(SqlError::coded("08P01", "COPY done without COPY in progress").into());
        };
        let this = self.self_arc()?;
        let session = this.session(client).await?;
        let guard = this.begin(&session);
        let s = session.clone();
        let load = self
            .shared
            .engine
            .executor()
            .run(async move { s.finish_copy_in(&copy, &data).await });
        let rows = guard.run(async { load.await? }).await?;
        let tag = Tag::new("COPY").with_rows(rows as usize);
        client
            .send(PgWireBackendMessage::CommandComplete(tag.into()))
            .await?;
        Ok(())
    }

    async fn on_copy_fail<C>(&self, _client: &mut C, fail: CopyFail) -> PgWireError
    where
        C: ClientInfo + Sink<PgWireBackendMessage> + Unpin + Send + Sync,
        C::Error: Debug,
        PgWireError: From<<C as Sink<PgWireBackendMessage>>::Error>,
    {
        if let Ok(mut s) = self.copy.lock() {
            *s = None;
        }
        SqlError::coded("57014", format!("COPY from stdin failed: {}", fail.message)).into()
    }
}

/// The cursor a prepared `DECLARE name CURSOR FOR …` declares.
fn declared_cursor(prepared: &Prepared) -> Option<String> {
    use datafusion::sql::parser::Statement as DFStatement;
    use datafusion::sql::sqlparser::ast::Statement;
    match prepared.statement.as_ref()? {
        DFStatement::Statement(s) => match s.as_ref() {
            Statement::Declare { stmts } => Some(stmts.first()?.names.first()?.value.clone()),
            _ => None,
        },
        _ => None,
    }
}

/// Finds connections by backend pid for cancel requests.
#[derive(Default)]
pub struct CancelRegistry {
    by_pid: Mutex<
        std::collections::HashMap<
            i32,
            (
                pgwire::messages::startup::SecretKey,
                std::sync::Weak<Connection>,
            ),
        >,
    >,
}

impl CancelRegistry {
    fn register(
        &self,
        pid: i32,
        key: pgwire::messages::startup::SecretKey,
        conn: std::sync::Weak<Connection>,
    ) {
        if let Ok(mut m) = self.by_pid.lock() {
            m.insert(pid, (key, conn));
        }
    }

    fn unregister(&self, pid: i32) {
        if let Ok(mut m) = self.by_pid.lock() {
            m.remove(&pid);
        }
    }

    fn find(
        &self,
        pid: i32,
        key: &pgwire::messages::startup::SecretKey,
    ) -> Option<Arc<Connection>> {
        let m = self.by_pid.lock().ok()?;
        let (k, c) = m.get(&pid)?;
        if k.to_bytes() == key.to_bytes() {
            c.upgrade()
        } else {
            None
        }
    }
}

#[async_trait]
impl CancelHandler for Connection {
    async fn on_cancel_request(&self, request: CancelRequest) {
        match self.shared.cancels.find(request.pid, &request.secret_key) {
            Some(conn) => {
                debug!(pid = request.pid, "cancel request");
                conn.cancel();
            }
            None => warn!(
                pid = request.pid,
                "cancel request for an unknown backend or with a wrong key"
            ),
        }
    }
}

/// Gives every error leaving the server a SQLSTATE: DataFusion errors that reach pgwire as
/// `ApiError` are classified instead of being sent as XX000. It also sees every error that
/// does not come back as a response — the extended protocol's Parse, Bind and Execute, and
/// rows that fail on their way in either protocol — and tells the session, so that any of
/// them aborts an open block.
pub struct Classifier {
    shared: Arc<Shared>,
    connection: std::sync::Weak<Connection>,
}

impl ErrorHandler for Classifier {
    fn on_error<C>(&self, client: &C, error: &mut PgWireError)
    where
        C: ClientInfo,
    {
        if let PgWireError::InvalidPassword(name) = error {
            let addr = client.socket_addr().ip();
            self.shared.backoff.failed(addr);
            // SCRAM clients leave the user name out of their first message (it was in the
            // start-up packet), so name the user the client logged in as.
            if name.is_empty() {
                *name = client.metadata().get("user").cloned().unwrap_or_default();
            }
            warn!(user = %name, %addr, "password authentication failed");
        }
        if let PgWireError::ApiError(inner) = error {
            let cl = if let Some(df) = inner.downcast_ref::<DataFusionError>() {
                classify(df)
            } else if let Some(s) = inner.downcast_ref::<SqlError>() {
                crate::errors::classify_sql(s)
            } else {
                crate::errors::Classified {
                    code: "XX000".into(),
                    message: inner.to_string(),
                    hint: None,
                }
            };
            let mut info = ErrorInfo::new("ERROR".into(), cl.code.into_owned(), cl.message);
            info.hint = cl.hint;
            *error = PgWireError::UserError(Box::new(info));
        }
        if let PgWireError::UserError(info) = error {
            debug!(code = %info.code, message = %info.message, "statement failed");
        }
        if let Some(session) = self
            .connection
            .upgrade()
            .and_then(|c| c.session.get().cloned())
        {
            session.statement_failed();
        }
    }
}

/// The handler set pgwire asks for, per connection.
pub struct Handlers(pub Arc<Connection>);

impl PgWireServerHandlers for Handlers {
    fn simple_query_handler(&self) -> Arc<impl SimpleQueryHandler> {
        self.0.clone()
    }

    fn extended_query_handler(&self) -> Arc<impl ExtendedQueryHandler> {
        self.0.clone()
    }

    fn startup_handler(&self) -> Arc<impl StartupHandler> {
        self.0.startup.clone()
    }

    fn copy_handler(&self) -> Arc<impl CopyHandler> {
        self.0.clone()
    }

    fn error_handler(&self) -> Arc<impl ErrorHandler> {
        Arc::new(Classifier {
            shared: self.0.shared.clone(),
            connection: Arc::downgrade(&self.0),
        })
    }

    fn cancel_handler(&self) -> Arc<impl CancelHandler> {
        self.0.clone()
    }
}
