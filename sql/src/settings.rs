//! Per-session run-time parameters (`SET`, `SHOW`, `RESET`, `current_setting`).

use std::collections::BTreeMap;
use std::sync::RwLock;
use std::time::Duration;

use crate::compat::server_version;

/// Parameters with their defaults and descriptions, as `SHOW ALL` lists them.
fn defaults() -> Vec<(&'static str, String, &'static str)> {
    vec![
        (
            "application_name",
            String::new(),
            "Sets the application name.",
        ),
        (
            "block_size",
            "8192".into(),
            "Shows the size of a disk block.",
        ),
        (
            "client_encoding",
            "UTF8".into(),
            "Sets the client's character set encoding.",
        ),
        (
            "client_min_messages",
            "notice".into(),
            "Sets the message levels sent to the client.",
        ),
        (
            "datestyle",
            "ISO, MDY".into(),
            "Sets the display format for date and time values.",
        ),
        (
            "default_transaction_isolation",
            "read committed".into(),
            "Each statement commits on its own.",
        ),
        (
            "default_transaction_read_only",
            "off".into(),
            "Sets the default read-only status of new transactions.",
        ),
        (
            "extra_float_digits",
            "1".into(),
            "Sets the number of digits displayed for floating-point values.",
        ),
        (
            "integer_datetimes",
            "on".into(),
            "Shows whether datetimes are integer based.",
        ),
        (
            "intervalstyle",
            "postgres".into(),
            "Sets the display format for interval values.",
        ),
        (
            "is_superuser",
            "on".into(),
            "Shows whether the current user is a superuser.",
        ),
        (
            "lc_collate",
            "C".into(),
            "Shows the collation order locale.",
        ),
        (
            "lc_ctype",
            "C".into(),
            "Shows the character classification locale.",
        ),
        (
            "lc_messages",
            "C".into(),
            "Sets the language in which messages are displayed.",
        ),
        (
            "max_function_args",
            "100".into(),
            "Shows the maximum number of function arguments.",
        ),
        (
            "max_index_keys",
            "32".into(),
            "Shows the maximum number of index keys.",
        ),
        (
            "max_identifier_length",
            "63".into(),
            "Shows the maximum identifier length.",
        ),
        (
            "search_path",
            "\"$user\", public".into(),
            "Sets the schema search order for names that are not schema-qualified.",
        ),
        (
            "server_encoding",
            "UTF8".into(),
            "Shows the server (database) character set encoding.",
        ),
        (
            "server_version",
            server_version(),
            "Shows the server version.",
        ),
        (
            "server_version_num",
            "160006".into(),
            "Shows the server version as an integer.",
        ),
        (
            "standard_conforming_strings",
            "on".into(),
            "Causes '...' strings to treat backslashes literally.",
        ),
        (
            "statement_timeout",
            "0".into(),
            "Sets the maximum allowed duration of any statement (ms; 0 = none).",
        ),
        (
            "timezone",
            "UTC".into(),
            "Sets the time zone for displaying and interpreting time stamps.",
        ),
        (
            "transaction_isolation",
            "read committed".into(),
            "Shows the current transaction's isolation level.",
        ),
        (
            "transaction_read_only",
            "off".into(),
            "Shows whether the current transaction is read-only.",
        ),
    ]
}

/// Canonical parameter name: lower case, with PostgreSQL's aliases resolved.
pub fn canonical(name: &str) -> String {
    let n = name.trim().to_ascii_lowercase();
    match n.as_str() {
        "time zone" | "time_zone" => "timezone".into(),
        "transaction isolation level" => "transaction_isolation".into(),
        "session authorization" => "session_authorization".into(),
        "names" => "client_encoding".into(),
        _ => n,
    }
}

/// One session's parameters.
#[derive(Debug)]
pub struct Settings {
    values: RwLock<BTreeMap<String, String>>,
    user: String,
}

impl Settings {
    pub fn new(user: &str, application_name: Option<&str>) -> Self {
        let s = Settings {
            values: RwLock::new(BTreeMap::new()),
            user: user.to_string(),
        };
        s.reset_all();
        if let Some(app) = application_name {
            s.set("application_name", app);
        }
        s
    }

    pub fn reset_all(&self) {
        if let Ok(mut v) = self.values.write() {
            v.clear();
            for (k, val, _) in defaults() {
                v.insert(k.to_string(), val);
            }
            v.insert("session_authorization".into(), self.user.clone());
        }
    }

    pub fn reset(&self, name: &str) {
        let name = canonical(name);
        let default = defaults().into_iter().find(|(k, _, _)| *k == name);
        if let Ok(mut v) = self.values.write() {
            match default {
                Some((_, val, _)) => {
                    v.insert(name, val);
                }
                None => {
                    v.remove(&name);
                }
            }
        }
    }

    pub fn get(&self, name: &str) -> Option<String> {
        self.values.read().ok()?.get(&canonical(name)).cloned()
    }

    pub fn set(&self, name: &str, value: &str) {
        if let Ok(mut v) = self.values.write() {
            v.insert(canonical(name), value.to_string());
        }
    }

    /// All parameters with their descriptions, for `SHOW ALL`.
    pub fn all(&self) -> Vec<(String, String, String)> {
        let descriptions: BTreeMap<&str, &str> =
            defaults().into_iter().map(|(k, _, d)| (k, d)).collect();
        self.values
            .read()
            .map(|v| {
                v.iter()
                    .map(|(k, val)| {
                        let d = descriptions.get(k.as_str()).copied().unwrap_or("");
                        (k.clone(), val.clone(), d.to_string())
                    })
                    .collect()
            })
            .unwrap_or_default()
    }

    /// `statement_timeout` as a duration; `None` when unset or zero.
    pub fn statement_timeout(&self) -> Option<Duration> {
        let raw = self.get("statement_timeout")?;
        parse_duration_ms(&raw)
            .filter(|ms| *ms > 0)
            .map(Duration::from_millis)
    }
}

/// Parses PostgreSQL's duration syntax for `statement_timeout`: a bare number is in
/// milliseconds; units ms, s, min, h, d are accepted.
pub fn parse_duration_ms(raw: &str) -> Option<u64> {
    let s = raw.trim().trim_matches('\'').trim();
    let split = s
        .find(|c: char| !(c.is_ascii_digit() || c == '.'))
        .unwrap_or(s.len());
    let (num, unit) = s.split_at(split);
    let n: f64 = num.parse().ok()?;
    let factor = match unit.trim() {
        "" | "ms" => 1.0,
        "s" => 1_000.0,
        "min" => 60_000.0,
        "h" => 3_600_000.0,
        "d" => 86_400_000.0,
        _ => return None,
    };
    Some((n * factor).round() as u64)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn durations_parse_like_postgres() {
        assert_eq!(parse_duration_ms("5000"), Some(5000));
        assert_eq!(parse_duration_ms("'2s'"), Some(2000));
        assert_eq!(parse_duration_ms("1min"), Some(60_000));
        assert_eq!(parse_duration_ms("abc"), None);
    }

    #[test]
    fn aliases_and_reset() {
        let s = Settings::new("flashsql", Some("psql"));
        assert_eq!(s.get("application_name").as_deref(), Some("psql"));
        s.set("TIME ZONE", "Asia/Shanghai");
        assert_eq!(s.get("timezone").as_deref(), Some("Asia/Shanghai"));
        s.reset("timezone");
        assert_eq!(s.get("TimeZone").as_deref(), Some("UTC"));
        s.set("statement_timeout", "250");
        assert_eq!(s.statement_timeout(), Some(Duration::from_millis(250)));
    }
}
