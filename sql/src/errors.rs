//! SQLSTATEs: every error a client sees carries the code PostgreSQL would use, and a message
//! in PostgreSQL's words where DataFusion's differ. `XX000` is kept for genuine internal
//! errors.

use datafusion::arrow::error::ArrowError;
use datafusion::common::SchemaError;
use datafusion::error::DataFusionError;
use datafusion::sql::sqlparser::parser::ParserError;
use flashsql_engine::EngineError;
use pgwire::error::{ErrorInfo, PgWireError};

/// Errors of the wire layer itself.
#[derive(Debug, thiserror::Error)]
pub enum SqlError {
    #[error("{message}")]
    Coded {
        code: SqlState,
        message: String,
        hint: Option<String>,
    },
    #[error("canceling statement due to user request")]
    Cancelled,
    #[error("canceling statement due to statement timeout")]
    Timeout,
    #[error(transparent)]
    DataFusion(#[from] DataFusionError),
    #[error(transparent)]
    Engine(#[from] EngineError),
}

impl SqlError {
    pub fn coded(code: &'static str, message: impl Into<String>) -> Self {
        SqlError::Coded {
            code: code.into(),
            message: message.into(),
            hint: None,
        }
    }

    pub fn with_hint(
        code: &'static str,
        message: impl Into<String>,
        hint: impl Into<String>,
    ) -> Self {
        SqlError::Coded {
            code: code.into(),
            message: message.into(),
            hint: Some(hint.into()),
        }
    }

    pub fn syntax(message: impl Into<String>) -> Self {
        Self::coded("42601", message)
    }

    pub fn not_supported(message: impl Into<String>) -> Self {
        Self::coded("0A000", message)
    }
}

/// A SQLSTATE: one of ours (static), or one the protocol library chose.
pub type SqlState = std::borrow::Cow<'static, str>;

/// A classified error: code, message, optional hint.
#[derive(Debug, Clone, PartialEq)]
pub struct Classified {
    pub code: SqlState,
    pub message: String,
    pub hint: Option<String>,
}

fn c(code: &'static str, message: impl Into<String>) -> Classified {
    let message = message.into();
    // Arrow's string and list arrays address at most 2 GiB per column of a batch; building a
    // bigger one panics with "offset overflow". However the panic travels (the statement's
    // task, a task DataFusion spawned, a join error inside an arrow or engine error), it is
    // a result too large, not an internal error.
    if code == "XX000" && message.contains("offset overflow") {
        return Classified {
            code: "54000".into(),
            message: "result too large: a column of one batch would exceed 2 GiB".into(),
            hint: None,
        };
    }
    Classified {
        code: code.into(),
        message,
        hint: None,
    }
}

/// Extracts the text between the first pair of single quotes.
fn quoted(msg: &str) -> Option<&str> {
    let start = msg.find('\'')? + 1;
    let end = msg[start..].find('\'')? + start;
    Some(&msg[start..end])
}

fn last_part(name: &str) -> &str {
    name.rsplit('.').next().unwrap_or(name)
}

fn classify_engine(e: &EngineError) -> Classified {
    match e {
        EngineError::RelationExists(_) => c("42P07", e.to_string()),
        EngineError::RelationNotFound(_) => c("42P01", e.to_string()),
        EngineError::SchemaExists(_) => c("42P06", e.to_string()),
        EngineError::SchemaNotFound(_) => c("3F000", e.to_string()),
        EngineError::SchemaNotEmpty(_) => c("2BP01", e.to_string()),
        EngineError::NotATable(_) | EngineError::NotAView(_) => c("42809", e.to_string()),
        EngineError::NotSupported(_) => c("0A000", e.to_string()),
        EngineError::DuplicateColumn(_) => c("42701", e.to_string()),
        EngineError::UndefinedColumn(_) => c("42703", e.to_string()),
        EngineError::PermissionDenied(_) => c("42501", e.to_string()),
        EngineError::ReadOnlyExternal(_) => c("42809", e.to_string()),
        EngineError::ConcurrentWrite(_) => c("40001", e.to_string()),
        EngineError::Interrupted => c("57014", e.to_string()),
        EngineError::SavepointNotFound(_) => c("3B001", e.to_string()),
        EngineError::InUse(_) => c("55006", e.to_string()),
        EngineError::Malformed { .. } => c("22P02", e.to_string()),
        EngineError::LoadMismatch { .. } => c("42804", e.to_string()),
        EngineError::NotNullViolation(_) => c("23502", e.to_string()),
        EngineError::RowChangedTwice { on_conflict } => Classified {
            hint: Some(
                if *on_conflict {
                    "Ensure that no rows proposed for insertion within the same command have duplicate constrained values."
                } else {
                    "Ensure that not more than one source row matches any one target row."
                }
                .into(),
            ),
            ..c("21000", e.to_string())
        },
        EngineError::CorruptTable { .. } => c("XX001", e.to_string()),
        EngineError::InvalidInput(_) => c("22023", e.to_string()),
        EngineError::CorruptCatalog { .. } => c("XX001", e.to_string()),
        EngineError::Io(io) => classify_io(io, e.to_string()),
        EngineError::Parquet(p) => match io_cause(p) {
            Some(io) => classify_io(io, e.to_string()),
            None => c("XX000", e.to_string()),
        },
        EngineError::DataFusion(inner) => classify(inner),
        EngineError::Arrow(a) => classify_arrow(a),
        _ => c("XX000", e.to_string()),
    }
}

fn classify_arrow(e: &ArrowError) -> Classified {
    match e {
        ArrowError::DivideByZero => c("22012", "division by zero"),
        ArrowError::CastError(m) | ArrowError::ParseError(m) => {
            datetime_input(m).unwrap_or_else(|| c("22P02", m.clone()))
        }
        ArrowError::ArithmeticOverflow(m) => c("22003", m.clone()),
        ArrowError::ComputeError(m) if m.contains("Overflow") || m.contains("overflow") => {
            c("22003", m.clone())
        }
        ArrowError::InvalidArgumentError(m) if m.contains("non-nullable") => not_null(m),
        // Timestamp arithmetic beyond the nanosecond range (years 1677–2262): PostgreSQL's
        // "timestamp out of range" is 22008.
        ArrowError::ComputeError(m) if m.contains("Timestamp out of range") => {
            c("22008", "timestamp out of range")
        }
        ArrowError::ComputeError(m) if m.contains("Regular expression did not compile") => {
            c("2201B", m.clone())
        }
        ArrowError::MemoryError(m) => c("53200", m.clone()),
        ArrowError::ExternalError(inner) => classify_dyn(inner.as_ref()),
        ArrowError::IoError(m, io) => classify_io(io, m.clone()),
        other => c("22000", other.to_string()),
    }
}

fn classify_dyn(e: &(dyn std::error::Error + Send + Sync + 'static)) -> Classified {
    if let Some(x) = e.downcast_ref::<EngineError>() {
        return classify_engine(x);
    }
    if let Some(x) = e.downcast_ref::<DataFusionError>() {
        return classify(x);
    }
    if let Some(x) = e.downcast_ref::<ArrowError>() {
        return classify_arrow(x);
    }
    if let Some(x) = e.downcast_ref::<SqlError>() {
        return classify_sql(x);
    }
    if let Some(x) = e.downcast_ref::<flashsql_udfs::error::FunctionError>() {
        return c(x.sqlstate(), x.to_string());
    }
    if let Some(io) = io_cause(e) {
        return classify_io(io, e.to_string());
    }
    let message = e.to_string();
    // The regex crate's error, as DataFusion's regexp functions pass it on.
    if message.starts_with("regex parse error") {
        return c(
            "2201B",
            format!("invalid regular expression: {}", message.replace('\n', " ")),
        );
    }
    c("XX000", message)
}

/// Arrow's refusal of a date or timestamp text, in PostgreSQL's terms: text shaped like a
/// date (digits-digits-digits) whose fields are out of range (`2026-02-30`, hour 25) is
/// 22008; anything else 22007.
fn datetime_input(m: &str) -> Option<Classified> {
    let value = if let Some(rest) = m.strip_prefix("Error parsing timestamp from '") {
        rest.split('\'').next()?
    } else if m.starts_with("Cannot cast string '")
        && (m.contains("Date32") || m.contains("Date64") || m.contains("Timestamp"))
    {
        m.strip_prefix("Cannot cast string '")?.split('\'').next()?
    } else {
        return None;
    };
    let date = value.split([' ', 'T']).next().unwrap_or("");
    let fields: Vec<&str> = date.split('-').collect();
    let shaped = fields.len() == 3
        && fields
            .iter()
            .all(|f| !f.is_empty() && f.bytes().all(|b| b.is_ascii_digit()));
    Some(if shaped {
        c(
            "22008",
            format!("date/time field value out of range: \"{value}\""),
        )
    } else {
        c(
            "22007",
            format!("invalid input syntax for type date or timestamp: \"{value}\""),
        )
    })
}

/// DataFusion's and Arrow's words for a NULL written into a NOT NULL column.
fn not_null(m: &str) -> Classified {
    c(
        "23502",
        format!("null value violates a not-null constraint: {m}"),
    )
}

/// The I/O error at the root of `e`'s chain of causes, if there is one.
fn io_cause<'a>(e: &'a (dyn std::error::Error + 'static)) -> Option<&'a std::io::Error> {
    let mut next = Some(e);
    while let Some(x) = next {
        if let Some(io) = x.downcast_ref::<std::io::Error>() {
            return Some(io);
        }
        next = x.source();
    }
    None
}

/// A failed read or write of the data directory: a full disk (or quota, or file size
/// limit) is 53100, as in PostgreSQL; anything else 58030.
fn classify_io(io: &std::io::Error, message: String) -> Classified {
    use std::io::ErrorKind;
    match io.kind() {
        ErrorKind::StorageFull | ErrorKind::QuotaExceeded | ErrorKind::FileTooLarge => c(
            "53100",
            format!(
                "could not write to the data directory: {io}; nothing of this statement was kept"
            ),
        ),
        _ => c("58030", message),
    }
}

/// Chooses the SQLSTATE and message for a DataFusion error.
pub fn classify(e: &DataFusionError) -> Classified {
    match e {
        DataFusionError::Context(_, inner) | DataFusionError::Diagnostic(_, inner) => {
            classify(inner)
        }
        DataFusionError::Shared(inner) => classify(inner),
        DataFusionError::Collection(errs) => errs
            .first()
            .map(classify)
            .unwrap_or_else(|| c("XX000", e.to_string())),
        DataFusionError::ArrowError(a, _) => classify_arrow(a),
        DataFusionError::SQL(p, _) => classify_parser(p),
        DataFusionError::SchemaError(s, _) => match s.as_ref() {
            SchemaError::FieldNotFound { field, .. } => {
                let mut out = c("42703", format!("column \"{}\" does not exist", field.name));
                out.hint = Some(e.strip_backtrace());
                out
            }
            SchemaError::AmbiguousReference { field } => c(
                "42702",
                format!("column reference \"{}\" is ambiguous", field.name),
            ),
            SchemaError::DuplicateQualifiedField { .. }
            | SchemaError::DuplicateUnqualifiedField { .. } => c("42701", e.strip_backtrace()),
        },
        // A correlated subquery DataFusion could not turn into a join.
        DataFusionError::Internal(m)
        | DataFusionError::Plan(m)
        | DataFusionError::NotImplemented(m)
            if m.contains("does not support logical expression ScalarSubquery")
                || m.contains("does not support logical expression Exists")
                || m.contains("does not support logical expression InSubquery") =>
        {
            c(
                "0A000",
                "this correlated subquery is not supported: write it as a join",
            )
        }
        DataFusionError::Plan(m) => classify_plan(m),
        DataFusionError::NotImplemented(m) => c("0A000", m.clone()),
        DataFusionError::ResourcesExhausted(m) => c("53200", format!("out of memory: {m}")),
        DataFusionError::Execution(m) => classify_execution(m),
        DataFusionError::ExecutionJoin(j) => c("XX000", j.to_string()),
        DataFusionError::Configuration(m) => c("22023", m.clone()),
        DataFusionError::IoError(io) => classify_io(io, io.to_string()),
        DataFusionError::ObjectStore(os) => c("58P01", os.to_string()),
        DataFusionError::ParquetError(p) => match io_cause(p.as_ref()) {
            Some(io) => classify_io(io, p.to_string()),
            None => c("XX001", p.to_string()),
        },
        DataFusionError::External(inner) => classify_dyn(inner.as_ref()),
        // Type coercion reports a call that fits none of a function's signatures as an
        // internal error (pinned below).
        DataFusionError::Internal(m) if m.contains("failed to match any signature") => c(
            "42883",
            format!("no function matches the given arguments: {m}"),
        ),
        DataFusionError::Internal(m) => c("XX000", m.clone()),
        other => c("XX000", other.strip_backtrace()),
    }
}

/// A syntax error, or nesting deeper than the parser follows (54001, like PostgreSQL's
/// "stack depth limit exceeded").
fn classify_parser(e: &ParserError) -> Classified {
    match e {
        ParserError::RecursionLimitExceeded => c(
            "54001",
            "statement too complex: nesting too deep for the parser",
        ),
        other => c("42601", other.to_string()),
    }
}

fn classify_plan(m: &str) -> Classified {
    let lower = m.to_ascii_lowercase();
    if lower.contains("table '") && lower.contains("not found") {
        let name = quoted(m).map(last_part).unwrap_or("?");
        return c("42P01", format!("relation \"{name}\" does not exist"));
    }
    if lower.starts_with("invalid function") || lower.contains("unknown function") {
        let name = quoted(m).unwrap_or("?");
        let mut out = c("42883", format!("function {name} does not exist"));
        out.hint = Some(m.to_string());
        return out;
    }
    // DataFusion's words for an operator with no implementation for its operand types.
    if lower.contains("cannot coerce arithmetic expression") {
        return c("42883", format!("operator does not exist: {m}"));
    }
    if lower.starts_with("no table named '") {
        let name = quoted(m).map(last_part).unwrap_or("?");
        return c("42P01", format!("relation \"{name}\" does not exist"));
    }
    if lower.starts_with("limit must be >= 0") {
        return c("2201W", "LIMIT must not be negative");
    }
    if lower.starts_with("offset must be >=0") {
        return c("2201X", "OFFSET must not be negative");
    }
    if lower.contains("must appear in the group by clause")
        || lower.contains("must be in group by")
        || lower.contains("aggregate functions are not allowed in the where clause")
    {
        return c("42803", m.to_string());
    }
    if lower.contains("no function matches")
        || lower.contains("failed to coerce arguments")
        || lower.contains("does not support zero arguments")
    {
        return c("42883", m.to_string());
    }
    if lower.contains("already exists") {
        return c("42P07", m.to_string());
    }
    // DataFusion's words for two result columns of one name (pinned in tests/it/errors.rs).
    if lower.contains("require unique expression names") {
        return c("42701", m.to_string());
    }
    if lower.contains("cannot infer common")
        || lower.contains("cannot be cast")
        || lower.contains("unsupported cast")
        || lower.contains("type mismatch")
    {
        return c("42804", m.to_string());
    }
    if lower.contains("schema") && lower.contains("not found") {
        return c("3F000", m.to_string());
    }
    c("42601", m.to_string())
}

fn classify_execution(m: &str) -> Classified {
    let lower = m.to_ascii_lowercase();
    if lower.contains("divide by zero") || lower.contains("division by zero") {
        c("22012", "division by zero")
    } else if lower.contains("cast error") || lower.contains("cannot cast") {
        datetime_input(m).unwrap_or_else(|| c("22P02", m.to_string()))
    } else if lower.contains("overflow") {
        c("22003", m.to_string())
    } else if lower.contains("non-nullable") {
        not_null(m)
    } else if lower.starts_with("prepared statement '") && lower.ends_with("' already exists") {
        c("42P05", m.to_string())
    } else if lower.starts_with("prepared statement '") && lower.ends_with("' does not exist") {
        c("26000", m.to_string())
    } else if lower.contains("scalar subquery returned more than one row") {
        c(
            "21000",
            "more than one row returned by a subquery used as an expression",
        )
    } else if lower.contains("already exists") {
        c("42P07", m.to_string())
    } else {
        c("22000", m.to_string())
    }
}

pub fn classify_sql(e: &SqlError) -> Classified {
    match e {
        SqlError::Coded {
            code,
            message,
            hint,
        } => Classified {
            code: code.clone(),
            message: message.clone(),
            hint: hint.clone(),
        },
        SqlError::Cancelled => c("57014", e.to_string()),
        SqlError::Timeout => c("57014", e.to_string()),
        SqlError::DataFusion(d) => classify(d),
        SqlError::Engine(x) => classify_engine(x),
    }
}

impl From<SqlError> for ErrorInfo {
    fn from(e: SqlError) -> Self {
        let cl = classify_sql(&e);
        let mut info = ErrorInfo::new("ERROR".into(), cl.code.into_owned(), cl.message);
        info.hint = cl.hint;
        info
    }
}

impl From<SqlError> for PgWireError {
    fn from(e: SqlError) -> Self {
        PgWireError::UserError(Box::new(e.into()))
    }
}

impl From<ParserError> for SqlError {
    fn from(e: ParserError) -> Self {
        let cl = classify_parser(&e);
        SqlError::Coded {
            code: cl.code,
            message: cl.message,
            hint: cl.hint,
        }
    }
}

impl From<ArrowError> for SqlError {
    fn from(e: ArrowError) -> Self {
        SqlError::DataFusion(DataFusionError::ArrowError(Box::new(e), None))
    }
}

impl From<PgWireError> for SqlError {
    /// Keeps the code the protocol library chose when it is a well-formed SQLSTATE.
    fn from(e: PgWireError) -> Self {
        let info: ErrorInfo = e.into();
        let well_formed = info.code.len() == 5
            && info
                .code
                .bytes()
                .all(|b| b.is_ascii_digit() || b.is_ascii_uppercase());
        SqlError::Coded {
            code: if well_formed {
                info.code.into()
            } else {
                "XX000".into()
            },
            message: info.message,
            hint: info.hint,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn plan_messages_map_to_postgres_codes() {
        let e = DataFusionError::Plan("table 'flashsql.public.nope' not found".into());
        let cl = classify(&e);
        assert_eq!(cl.code, "42P01");
        assert_eq!(cl.message, "relation \"nope\" does not exist");
        let e =
            DataFusionError::Plan("Invalid function 'frobnicate'.\nDid you mean 'floor'?".into());
        assert_eq!(classify(&e).code, "42883");
        let e = DataFusionError::ArrowError(Box::new(ArrowError::DivideByZero), None);
        assert_eq!(classify(&e).code, "22012");
        let e = DataFusionError::Context(
            "while planning".into(),
            Box::new(DataFusionError::NotImplemented("x".into())),
        );
        assert_eq!(classify(&e).code, "0A000");
        let e = DataFusionError::ResourcesExhausted("pool".into());
        assert_eq!(classify(&e).code, "53200");
    }

    /// Each of DataFusion's messages the classifier reads, as DataFusion words it: a new
    /// DataFusion that words one differently fails here rather than in front of a user.
    #[test]
    fn datafusion_messages_are_pinned() {
        let plan = |m: &str| classify(&DataFusionError::Plan(m.into())).code;
        let exec = |m: &str| classify(&DataFusionError::Execution(m.into())).code;
        assert_eq!(
            plan("Cannot coerce arithmetic expression Utf8 + Int64 to valid types"),
            "42883"
        );
        assert_eq!(plan("No table named 'nope'"), "42P01");
        assert_eq!(plan("LIMIT must be >= 0, '-1' was provided"), "2201W");
        assert_eq!(plan("OFFSET must be >=0, '-1' was provided"), "2201X");
        assert_eq!(
            plan(
                "Column in SELECT must be in GROUP BY or an aggregate function: While expanding wildcard, column \"users.user_id\" must appear in the GROUP BY clause or must be part of an aggregate function"
            ),
            "42803"
        );
        assert_eq!(
            plan(
                "Aggregate functions are not allowed in the WHERE clause. Consider using HAVING instead"
            ),
            "42803"
        );
        assert_eq!(exec("Prepared statement 'p' already exists"), "42P05");
        assert_eq!(exec("Prepared statement 'p' does not exist"), "26000");
        assert_eq!(
            exec("Invalid batch column at '0' has null but schema specifies non-nullable"),
            "23502"
        );
        assert_eq!(exec("Scalar subquery returned more than one row"), "21000");
        assert_eq!(
            classify(&DataFusionError::Internal(
                "Function 'range' failed to match any signature, errors: …".into()
            ))
            .code,
            "42883"
        );
        assert_eq!(
            classify(&DataFusionError::Internal(
                "statement task failed: task 527 panicked with message \"offset overflow\"".into()
            ))
            .code,
            "54000"
        );
        // The same panic in a task DataFusion spawned, passed on as the task's join error
        // (seen from the SQL fuzzer, seed 10: `array_to_string` with a 300 kB separator).
        let joined = || {
            tokio::runtime::Builder::new_current_thread()
                .build()
                .expect("runtime")
                .block_on(async { tokio::spawn(async { panic!("offset overflow") }).await })
                .expect_err("the task panics")
        };
        assert_eq!(
            classify(&DataFusionError::ExecutionJoin(Box::new(joined()))).code,
            "54000"
        );
        assert_eq!(
            classify_arrow(&ArrowError::ExternalError(Box::new(joined()))).code,
            "54000"
        );
        let cast = |m: &str| classify_arrow(&ArrowError::CastError(m.into())).code;
        assert_eq!(
            cast("Error parsing timestamp from '2026-02-30': error parsing date"),
            "22008"
        );
        assert_eq!(
            cast(
                "Error parsing timestamp from 'abc': timestamp must contain at least 10 characters"
            ),
            "22007"
        );
        assert_eq!(
            cast("Cannot cast string '2026-13-01' to value of Date32 type"),
            "22008"
        );
        assert_eq!(
            cast("Cannot cast string 'x' to value of Date32 type"),
            "22007"
        );
        assert_eq!(
            cast("Cannot cast string 'x' to value of Int64 type"),
            "22P02"
        );
        assert_eq!(
            classify_arrow(&ArrowError::ComputeError("Timestamp out of range".into())).code,
            "22008"
        );
        let regex = regex_error();
        assert_eq!(
            classify(&DataFusionError::External(Box::new(regex))).code,
            "2201B"
        );
        assert_eq!(
            classify_arrow(&ArrowError::ComputeError(
                "Regular expression did not compile: Syntax(…)".into()
            ))
            .code,
            "2201B"
        );
    }

    /// The regex crate's error for an unclosed class, as DataFusion passes it on.
    fn regex_error() -> impl std::error::Error + Send + Sync + 'static {
        #[derive(Debug)]
        struct RegexParse;
        impl std::fmt::Display for RegexParse {
            fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("regex parse error:\n    [\n    ^\nerror: unclosed character class")
            }
        }
        impl std::error::Error for RegexParse {}
        RegexParse
    }

    #[test]
    fn protocol_library_codes_pass_through() {
        let e = PgWireError::UserError(Box::new(ErrorInfo::new(
            "ERROR".into(),
            "22021".into(),
            "invalid byte sequence".into(),
        )));
        assert_eq!(classify_sql(&SqlError::from(e)).code, "22021");
        let e = PgWireError::UserError(Box::new(ErrorInfo::new(
            "ERROR".into(),
            "nonsense".into(),
            "x".into(),
        )));
        assert_eq!(classify_sql(&SqlError::from(e)).code, "XX000");
    }

    #[test]
    fn engine_errors_keep_their_codes_through_datafusion() {
        let e: DataFusionError = EngineError::RelationExists("t".into()).into();
        assert_eq!(classify(&e).code, "42P07");
        let e: DataFusionError = EngineError::RelationNotFound("t".into()).into();
        assert_eq!(classify(&e).code, "42P01");
    }
}
