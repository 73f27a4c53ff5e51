//! Checks of extended-protocol messages that PostgreSQL makes and the protocol library does
//! not: a Bind must match its statement, format codes are 0 (text) or 1 (binary), a named
//! statement is not silently replaced, an Execute asks for zero or more rows.
//!
//! Messages malformed below this level (lengths or counts that run past the message, unknown
//! types, invalid UTF-8) never reach the protocol library: `frames` refuses them first.

use crate::errors::SqlError;

fn violation(message: String) -> SqlError {
    SqlError::coded("08P01", message)
}

/// Format codes: each 0 or 1; as many as the values they describe, or one for all, or none.
pub fn format_codes(codes: &[i16], values: usize, what: &str) -> Result<(), SqlError> {
    if let Some(bad) = codes.iter().find(|c| !matches!(c, 0 | 1)) {
        return Err(SqlError::coded(
            "22P03",
            format!("unsupported format code: {bad}"),
        ));
    }
    if codes.len() > 1 && codes.len() != values {
        return Err(violation(format!(
            "bind message has {} {what} formats but {values} {what}s",
            codes.len()
        )));
    }
    Ok(())
}

/// A Bind supplies exactly the parameters its statement takes.
pub fn parameter_count(supplied: usize, required: usize, statement: &str) -> Result<(), SqlError> {
    if supplied != required {
        return Err(violation(format!(
            "bind message supplies {supplied} parameters, but prepared statement \"{statement}\" requires {required}"
        )));
    }
    Ok(())
}

/// An Execute's row limit: 0 means all rows.
pub fn max_rows(max_rows: i32) -> Result<(), SqlError> {
    if max_rows < 0 {
        return Err(violation(format!(
            "invalid row count in Execute message: {max_rows}"
        )));
    }
    Ok(())
}

/// A named statement must be closed (or deallocated) before its name is used again; the
/// unnamed one is replaced by each Parse.
pub fn statement_name_free(name: &str, exists: bool) -> Result<(), SqlError> {
    if !name.is_empty() && exists {
        return Err(SqlError::coded(
            "42P05",
            format!("prepared statement \"{name}\" already exists"),
        ));
    }
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    fn code(r: Result<(), SqlError>) -> Option<crate::errors::SqlState> {
        r.err().map(|e| crate::errors::classify_sql(&e).code)
    }

    #[test]
    fn malformed_bind_and_execute_messages_get_postgres_codes() {
        assert_eq!(code(format_codes(&[], 3, "parameter")), None);
        assert_eq!(code(format_codes(&[1], 3, "parameter")), None);
        assert_eq!(code(format_codes(&[0, 1, 1], 3, "parameter")), None);
        assert_eq!(
            code(format_codes(&[7], 1, "parameter")),
            Some("22P03".into())
        );
        assert_eq!(code(format_codes(&[-1], 1, "result")), Some("22P03".into()));
        assert_eq!(
            code(format_codes(&[0, 1], 3, "parameter")),
            Some("08P01".into())
        );
        assert_eq!(code(parameter_count(2, 2, "s")), None);
        assert_eq!(code(parameter_count(3, 2, "s")), Some("08P01".into()));
        assert_eq!(code(max_rows(0)), None);
        assert_eq!(code(max_rows(-1)), Some("08P01".into()));
        assert_eq!(code(statement_name_free("", true)), None);
        assert_eq!(code(statement_name_free("s1", false)), None);
        assert_eq!(code(statement_name_free("s1", true)), Some("42P05".into()));
    }
}
