//! Which host files clients may reach, and external tables that cannot be written.
//!
//! `CREATE EXTERNAL TABLE … LOCATION` and `COPY … TO 'file'` name paths on the server's
//! machine. A client must not read `/etc/shadow` or write into any directory the server can,
//! so locations are allowed only under directories the operator names (`--allow-path`), plus
//! the data directory's `import/`. A location is resolved the way the file system will
//! resolve it — symbolic links and `..` included — before it is compared.
//!
//! External tables are read-only: files written into them bypass the durable write path
//! (no temporary name, fsync, atomic catalog commit), so loading goes through
//! `CREATE TABLE … AS SELECT … FROM external_table` instead.

use std::borrow::Cow;
use std::path::{Component, Path, PathBuf};
use std::sync::Arc;

use async_trait::async_trait;
use datafusion::arrow::datatypes::SchemaRef;
use datafusion::catalog::{Session, TableProvider};
use datafusion::common::{Constraints, Statistics};
use datafusion::datasource::TableType;
use datafusion::error::Result;
use datafusion::logical_expr::dml::InsertOp;
use datafusion::logical_expr::{Expr, LogicalPlan, TableProviderFilterPushDown};
use datafusion::physical_plan::ExecutionPlan;

use crate::error::EngineError;

/// The directories external locations may lie under, resolved once at start.
#[derive(Debug, Clone, Default)]
pub struct AllowedPaths {
    roots: Vec<PathBuf>,
}

impl AllowedPaths {
    /// `dirs` must exist; each is resolved to its canonical path.
    pub fn new<'a>(dirs: impl IntoIterator<Item = &'a Path>) -> Result<Self, EngineError> {
        let roots = dirs
            .into_iter()
            .map(|d| {
                d.canonicalize().map_err(|e| {
                    EngineError::InvalidInput(format!("--allow-path {}: {e}", d.display()))
                })
            })
            .collect::<Result<Vec<_>, _>>()?;
        Ok(Self { roots })
    }

    /// Refuses a location outside every allowed directory (SQLSTATE 42501).
    pub fn check(&self, location: &str) -> Result<(), EngineError> {
        let path = local_path(location)?;
        let resolved = resolve(&path).ok_or_else(|| self.denied(location))?;
        if self.roots.iter().any(|r| resolved.starts_with(r)) {
            Ok(())
        } else {
            Err(self.denied(location))
        }
    }

    /// [`AllowedPaths::check`] for each of a table's locations.
    pub fn check_all(&self, locations: &[String]) -> Result<(), EngineError> {
        locations.iter().try_for_each(|l| self.check(l))
    }

    fn denied(&self, location: &str) -> EngineError {
        let allowed = if self.roots.is_empty() {
            "none".to_string()
        } else {
            self.roots
                .iter()
                .map(|r| r.display().to_string())
                .collect::<Vec<_>>()
                .join(", ")
        };
        EngineError::PermissionDenied(format!(
            "location '{location}' is outside the directories this server allows ({allowed}); \
             the operator can allow one with --allow-path DIR, or stream the file in with COPY … FROM STDIN"
        ))
    }
}

/// The file-system path a location names: a plain path or a `file://` URL, up to its first
/// glob character. Other URL schemes are refused.
fn local_path(location: &str) -> Result<PathBuf, EngineError> {
    let path: Cow<'_, str> = if let Some(rest) = location.strip_prefix("file://") {
        Cow::Borrowed(rest)
    } else if location.contains("://") {
        return Err(EngineError::NotSupported(format!(
            "external location '{location}': only local files are supported"
        )));
    } else {
        Cow::Borrowed(location)
    };
    let end = path.find(['*', '?', '[', '{']).unwrap_or(path.len());
    let path = Path::new(&path[..end]);
    Ok(if path.is_absolute() {
        path.to_path_buf()
    } else {
        std::env::current_dir()?.join(path)
    })
}

/// `path` with symbolic links and `..` resolved: its longest existing ancestor canonicalized,
/// and the rest appended if it has no `..` (which could climb out again once created).
fn resolve(path: &Path) -> Option<PathBuf> {
    let mut existing = path;
    let mut rest = Vec::new();
    loop {
        if let Ok(c) = existing.canonicalize() {
            let mut out = c;
            for part in rest.iter().rev() {
                out.push(part);
            }
            return Some(out);
        }
        let name = existing.file_name()?;
        rest.push(name.to_os_string());
        existing = existing.parent()?;
        if existing
            .components()
            .any(|c| matches!(c, Component::ParentDir))
            && !existing.exists()
        {
            return None;
        }
    }
}

/// An external table: reads pass through, writes are refused.
#[derive(Debug)]
pub struct ReadOnlyTable {
    inner: Arc<dyn TableProvider>,
    name: String,
}

impl ReadOnlyTable {
    pub fn new(inner: Arc<dyn TableProvider>, name: &str) -> Self {
        Self {
            inner,
            name: name.to_string(),
        }
    }
}

#[async_trait]
impl TableProvider for ReadOnlyTable {
    fn schema(&self) -> SchemaRef {
        self.inner.schema()
    }

    fn constraints(&self) -> Option<&Constraints> {
        self.inner.constraints()
    }

    fn table_type(&self) -> TableType {
        self.inner.table_type()
    }

    fn get_table_definition(&self) -> Option<&str> {
        self.inner.get_table_definition()
    }

    fn get_logical_plan(&self) -> Option<Cow<'_, LogicalPlan>> {
        self.inner.get_logical_plan()
    }

    fn get_column_default(&self, column: &str) -> Option<&Expr> {
        self.inner.get_column_default(column)
    }

    async fn scan(
        &self,
        state: &dyn Session,
        projection: Option<&Vec<usize>>,
        filters: &[Expr],
        limit: Option<usize>,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        self.inner.scan(state, projection, filters, limit).await
    }

    fn supports_filters_pushdown(
        &self,
        filters: &[&Expr],
    ) -> Result<Vec<TableProviderFilterPushDown>> {
        self.inner.supports_filters_pushdown(filters)
    }

    fn statistics(&self) -> Option<Statistics> {
        self.inner.statistics()
    }

    async fn insert_into(
        &self,
        _state: &dyn Session,
        _input: Arc<dyn ExecutionPlan>,
        _insert_op: InsertOp,
    ) -> Result<Arc<dyn ExecutionPlan>> {
        Err(EngineError::ReadOnlyExternal(self.name.clone()).into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn locations_resolve_before_they_are_compared() {
        let dir = tempfile::tempdir().expect("tempdir");
        let allowed = dir.path().join("import");
        std::fs::create_dir(&allowed).expect("mkdir");
        std::fs::write(allowed.join("a.csv"), "x\n1\n").expect("write");
        let paths = AllowedPaths::new([allowed.as_path()]).expect("allowed");
        let inside = allowed.join("a.csv");
        assert!(paths.check(&inside.display().to_string()).is_ok());
        assert!(paths.check(&format!("file://{}", inside.display())).is_ok());
        assert!(paths.check(&format!("{}/*.csv", allowed.display())).is_ok());
        assert!(
            paths
                .check(&format!("{}/not_yet/b.csv", allowed.display()))
                .is_ok()
        );
        for outside in [
            "/etc/shadow".to_string(),
            "file:///etc/passwd".to_string(),
            format!("{}/../../../etc/shadow", allowed.display()),
            format!("{}/new/../../x.csv", allowed.display()),
            dir.path().display().to_string(),
        ] {
            let err = paths.check(&outside).expect_err(&outside);
            assert!(
                matches!(err, EngineError::PermissionDenied(_)),
                "{outside}: {err}"
            );
        }
        // A link inside the allowed directory that points out of it.
        #[cfg(unix)]
        {
            std::os::unix::fs::symlink("/etc", allowed.join("etc")).expect("symlink");
            let err = paths
                .check(&format!("{}/etc/passwd", allowed.display()))
                .expect_err("link out");
            assert!(matches!(err, EngineError::PermissionDenied(_)));
        }
        assert!(matches!(
            paths.check("s3://bucket/x.parquet"),
            Err(EngineError::NotSupported(_))
        ));
        assert!(matches!(
            AllowedPaths::default().check(&inside.display().to_string()),
            Err(EngineError::PermissionDenied(_))
        ));
    }
}
