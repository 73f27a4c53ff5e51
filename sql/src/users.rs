//! Who may log in, with which password, and whether they may change anything.
//!
//! The operator lists users in a file (`--users-file`), one per line:
//!
//! ```text
//! # name:role:password       (the password is the rest of the line, ':' included)
//! analyst:read_only:correct horse battery staple
//! etl:read_write:s3cret
//! ```
//!
//! A `read_only` user reads everything but is refused (42501) every statement that writes:
//! INSERT, UPDATE, DELETE, COPY FROM, DDL, external tables, and the functions that write
//! (`train_model`, `drop_model`, `load_file`). Unlike `default_transaction_read_only`, the
//! user cannot switch it off. The file is read once, at start-up; the server keeps only
//! salted SCRAM secrets.

use std::collections::HashMap;
use std::path::Path;

use crate::auth::ScramSecret;

/// What a user may do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Role {
    ReadWrite,
    ReadOnly,
}

/// One line of the users file.
#[derive(Clone, PartialEq, Eq)]
pub struct UserDef {
    pub name: String,
    pub role: Role,
    pub password: String,
}

impl std::fmt::Debug for UserDef {
    /// Never prints the password.
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UserDef")
            .field("name", &self.name)
            .field("role", &self.role)
            .finish_non_exhaustive()
    }
}

#[derive(Debug, thiserror::Error)]
pub enum UsersError {
    #[error("{file}, line {line}: {reason}")]
    Line {
        file: String,
        line: usize,
        reason: String,
    },
    #[error("{file}: user \"{name}\" is listed twice")]
    Duplicate { file: String, name: String },
    #[error("{file}: no users in the file")]
    Empty { file: String },
    #[error("reading {file}: {source}")]
    Io {
        file: String,
        source: std::io::Error,
    },
}

/// Parses a users file's text; `file` names it in errors.
pub fn parse(text: &str, file: &str) -> Result<Vec<UserDef>, UsersError> {
    let mut users: Vec<UserDef> = Vec::new();
    for (i, raw) in text.lines().enumerate() {
        let line = raw.trim_end_matches('\r');
        if line.trim().is_empty() || line.trim_start().starts_with('#') {
            continue;
        }
        let bad = |reason: &str| UsersError::Line {
            file: file.to_string(),
            line: i + 1,
            reason: reason.to_string(),
        };
        let mut parts = line.splitn(3, ':');
        let (Some(name), Some(role), Some(password)) = (parts.next(), parts.next(), parts.next())
        else {
            return Err(bad("expected name:role:password"));
        };
        let name = name.trim();
        if name.is_empty() || name.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(bad(
                "a user name must be non-empty, without spaces or control characters",
            ));
        }
        let role = match role.trim() {
            "read_write" => Role::ReadWrite,
            "read_only" => Role::ReadOnly,
            other => {
                return Err(bad(&format!(
                    "unknown role \"{other}\": expected read_write or read_only"
                )));
            }
        };
        if password.is_empty() {
            return Err(bad("empty password"));
        }
        if users.iter().any(|u| u.name == name) {
            return Err(UsersError::Duplicate {
                file: file.to_string(),
                name: name.to_string(),
            });
        }
        users.push(UserDef {
            name: name.to_string(),
            role,
            password: password.to_string(),
        });
    }
    if users.is_empty() {
        return Err(UsersError::Empty {
            file: file.to_string(),
        });
    }
    Ok(users)
}

/// Reads and parses a users file, warning when other users can read it.
pub fn read_file(path: &Path) -> Result<Vec<UserDef>, UsersError> {
    let file = path.display().to_string();
    let text = std::fs::read_to_string(path).map_err(|source| UsersError::Io {
        file: file.clone(),
        source,
    })?;
    #[cfg(unix)]
    {
        use std::os::unix::fs::PermissionsExt;
        if let Ok(meta) = std::fs::metadata(path)
            && meta.permissions().mode() & 0o077 != 0
        {
            tracing::warn!(
                file = %file,
                mode = format!("{:o}", meta.permissions().mode() & 0o777),
                "the users file can be read by other users: chmod 600 it"
            );
        }
    }
    parse(&text, &file)
}

/// A user the server accepts.
#[derive(Debug, Clone)]
pub struct Login {
    pub secret: ScramSecret,
    pub role: Role,
}

/// Everyone who may log in; empty means no password is asked (loopback only).
#[derive(Debug, Default)]
pub struct Logins(HashMap<String, Login>);

impl Logins {
    pub fn new(users: &[UserDef]) -> Self {
        Logins(
            users
                .iter()
                .map(|u| {
                    (
                        u.name.clone(),
                        Login {
                            secret: ScramSecret::new(&u.password),
                            role: u.role,
                        },
                    )
                })
                .collect(),
        )
    }

    pub fn get(&self, name: &str) -> Option<&Login> {
        self.0.get(name)
    }

    pub fn is_empty(&self) -> bool {
        self.0.is_empty()
    }

    /// The role of `name`: read-write for everyone when no users are configured.
    pub fn role(&self, name: &str) -> Role {
        if self.0.is_empty() {
            return Role::ReadWrite;
        }
        self.0.get(name).map_or(Role::ReadOnly, |l| l.role)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn lines_name_a_role_and_keep_colons_in_passwords() {
        let users = parse(
            "# who\n\nanalyst:read_only:a:b c\r\netl:read_write:x\n",
            "users",
        )
        .expect("parses");
        assert_eq!(users.len(), 2);
        assert_eq!(users[0].name, "analyst");
        assert_eq!(users[0].role, Role::ReadOnly);
        assert_eq!(users[0].password, "a:b c");
        assert_eq!(users[1].role, Role::ReadWrite);
        assert!(
            !format!("{:?}", users[0]).contains("a:b c"),
            "no password in logs"
        );
    }

    #[test]
    fn mistakes_name_their_line() {
        for (text, needle) in [
            ("analyst:read_only\n", "line 1: expected name:role:password"),
            ("# c\nanalyst:admin:x\n", "line 2: unknown role \"admin\""),
            ("a b:read_only:x\n", "line 1: a user name"),
            ("a:read_only:\n", "line 1: empty password"),
            ("a:read_only:x\na:read_write:y\n", "\"a\" is listed twice"),
            ("# nobody\n", "no users"),
        ] {
            let e = parse(text, "users").expect_err(text).to_string();
            assert!(e.contains(needle), "{text:?}: {e}");
        }
    }

    #[test]
    fn unknown_users_get_no_rights() {
        let logins = Logins::new(&parse("a:read_write:x\n", "users").expect("parses"));
        assert_eq!(logins.role("a"), Role::ReadWrite);
        assert_eq!(logins.role("b"), Role::ReadOnly);
        assert_eq!(Logins::default().role("b"), Role::ReadWrite);
    }
}
