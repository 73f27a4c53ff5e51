//! DDL as data: each change of the catalog's names (a schema, table, view or external table
//! created, dropped, renamed or commented) is a [`CatalogChange`] applied to a manifest.
//!
//! Outside a transaction block the store applies a change in a commit of its own
//! ([`crate::store::Store::apply`]). Inside a block the change is recorded instead
//! ([`crate::transaction::Transaction::record`]): the block sees the catalog with its changes
//! applied, and COMMIT applies them again — on the catalog as it is then, together with the
//! block's writes, in one commit — so that ROLLBACK undoes a `CREATE TABLE` or a `DROP VIEW`
//! as it undoes an INSERT. One `apply` serves both, so a statement behaves the same in and
//! out of a block.

use std::collections::HashSet;
use std::sync::Arc;

use datafusion::catalog::TableProvider;

use crate::error::{EngineError, Result};
use crate::manifest::{ExternalDef, Manifest, RelationKind, TableDef, ViewDef};

/// A relation's planned provider (views and external tables), keyed by (schema, name).
pub type PlannedKey = (String, String);

/// One change of the catalog's names.
#[derive(Debug, Clone)]
pub enum CatalogChange {
    CreateSchema {
        name: String,
        if_not_exists: bool,
    },
    /// Drops a schema; with `cascade` its relations go too.
    DropSchema {
        name: String,
        if_exists: bool,
        cascade: bool,
    },
    /// Registers a table whose files are already durable (`def.id`'s folder). With
    /// `replace`, a table of that name is dropped in the same change.
    PublishTable {
        def: TableDef,
        replace: bool,
    },
    CreateView {
        def: ViewDef,
        provider: Arc<dyn TableProvider>,
        or_replace: bool,
    },
    CreateExternal {
        def: ExternalDef,
        provider: Arc<dyn TableProvider>,
        or_replace: bool,
    },
    /// Drops a relation of the expected kind (a view for `View`, a table or external table
    /// otherwise). `expect_files`, set inside a block, are the table's files as the block
    /// first saw them: if another transaction changed the table since, COMMIT fails (40001)
    /// instead of dropping rows the block never saw.
    Drop {
        schema: String,
        name: String,
        expect: RelationKind,
        if_exists: bool,
        expect_files: Option<(u64, Vec<String>)>,
    },
    /// `ALTER TABLE|VIEW … RENAME TO …`, within the schema.
    Rename {
        schema: String,
        from: String,
        to: String,
    },
    /// `ALTER TABLE … SET (sort_by = …)`: the order the table's files are kept in (empty:
    /// none). The rewrite into that order is the statement's own write; `expect_files`,
    /// filled in by the block that records the change, are the files it rewrote, so that
    /// COMMIT fails (40001) rather than declare an order over rows another transaction
    /// added meanwhile.
    SetSortOrder {
        schema: String,
        name: String,
        sort_by: Vec<String>,
        expect_files: Option<(u64, Vec<String>)>,
    },
    /// `COMMENT ON TABLE|VIEW`.
    Comment {
        schema: String,
        name: String,
        comment: Option<String>,
    },
}

/// What happens to a planned provider when a change commits.
#[derive(Debug, Clone)]
pub enum PlannedEffect {
    Set(PlannedKey, Arc<dyn TableProvider>),
    Forget(PlannedKey),
    Move(PlannedKey, PlannedKey),
}

/// Where planned providers are kept: the store's map, or a block's overlay of it.
pub trait PlannedProviders {
    fn get(&self, key: &PlannedKey) -> Option<Arc<dyn TableProvider>>;
    /// Sets (`Some`) or forgets (`None`) the provider of `key`.
    fn put(&mut self, key: PlannedKey, provider: Option<Arc<dyn TableProvider>>);
}

impl PlannedEffect {
    /// Carries the effect out on `providers` (one meaning for the store and for a block).
    pub fn apply_to(self, providers: &mut impl PlannedProviders) {
        match self {
            PlannedEffect::Set(key, p) => providers.put(key, Some(p)),
            PlannedEffect::Forget(key) => providers.put(key, None),
            PlannedEffect::Move(from, to) => {
                let p = providers.get(&from);
                providers.put(from, None);
                providers.put(to, p);
            }
        }
    }
}

/// What an applied change leaves to do once its commit is durable.
#[derive(Debug, Default)]
pub struct Applied {
    /// Whether anything changed (false for `IF [NOT] EXISTS` that found nothing to do).
    pub changed: bool,
    /// Tables dropped: their folders go after the commit.
    pub dropped_tables: Vec<u64>,
    pub planned: Vec<PlannedEffect>,
}

fn key(schema: &str, name: &str) -> PlannedKey {
    (schema.to_string(), name.to_string())
}

fn check_free(m: &Manifest, schema: &str, name: &str) -> Result<()> {
    if !m.has_schema(schema) {
        return Err(EngineError::SchemaNotFound(schema.to_string()));
    }
    if m.has_relation(schema, name) {
        return Err(EngineError::RelationExists(name.to_string()));
    }
    Ok(())
}

/// Removes `schema.name` whatever its kind, noting its folder (a table) or provider (a view
/// or external table) in `out`.
fn remove_relation(m: &mut Manifest, schema: &str, name: &str, out: &mut Applied) {
    if let Some(t) = m.table(schema, name) {
        out.dropped_tables.push(t.id);
    }
    let before = m.views.len() + m.external.len();
    m.tables.retain(|t| !(t.schema == schema && t.name == name));
    m.views.retain(|v| !(v.schema == schema && v.name == name));
    m.external
        .retain(|e| !(e.schema == schema && e.name == name));
    if m.views.len() + m.external.len() != before {
        out.planned.push(PlannedEffect::Forget(key(schema, name)));
    }
}

/// A table's files as a block saw them: its id and their names.
pub type SeenFiles = Option<(u64, Vec<String>)>;

/// Fails with 40001 unless table `t` still holds exactly the files a block saw (`expect`,
/// when recorded): another transaction changed it since.
fn unchanged_since(t: &TableDef, expect: &SeenFiles) -> Result<()> {
    if let Some((id, files)) = expect {
        let now: HashSet<&String> = t.files.iter().collect();
        if t.id != *id || now != files.iter().collect() {
            return Err(EngineError::ConcurrentWrite(t.name.clone()));
        }
    }
    Ok(())
}

impl CatalogChange {
    /// The table a change must find as the block saw it, and where its files go: a dropped
    /// table, a table whose order is set.
    pub fn expected_table(&mut self) -> Option<(&str, &str, &mut SeenFiles)> {
        match self {
            CatalogChange::Drop {
                schema,
                name,
                expect: RelationKind::Table,
                expect_files,
                ..
            }
            | CatalogChange::SetSortOrder {
                schema,
                name,
                expect_files,
                ..
            } => Some((schema.as_str(), name.as_str(), expect_files)),
            _ => None,
        }
    }

    /// The table folder this change brings into the catalog, if any: it is removed when the
    /// change fails or its block rolls back.
    pub fn created_table(&self) -> Option<u64> {
        match self {
            CatalogChange::PublishTable { def, .. } => Some(def.id),
            _ => None,
        }
    }

    /// Applies the change to `m`. On error `m` may be half-changed: callers apply to a copy.
    pub fn apply(&self, m: &mut Manifest) -> Result<Applied> {
        let mut out = Applied {
            changed: true,
            ..Applied::default()
        };
        match self {
            CatalogChange::CreateSchema {
                name,
                if_not_exists,
            } => {
                if m.has_schema(name) {
                    if *if_not_exists {
                        out.changed = false;
                        return Ok(out);
                    }
                    return Err(EngineError::SchemaExists(name.clone()));
                }
                m.schemas.push(name.clone());
            }
            CatalogChange::DropSchema {
                name,
                if_exists,
                cascade,
            } => {
                if !m.has_schema(name) {
                    if *if_exists {
                        out.changed = false;
                        return Ok(out);
                    }
                    return Err(EngineError::SchemaNotFound(name.clone()));
                }
                let members: Vec<String> = m
                    .tables
                    .iter()
                    .filter(|t| &t.schema == name)
                    .map(|t| t.name.clone())
                    .chain(
                        m.views
                            .iter()
                            .filter(|v| &v.schema == name)
                            .map(|v| v.name.clone()),
                    )
                    .chain(
                        m.external
                            .iter()
                            .filter(|e| &e.schema == name)
                            .map(|e| e.name.clone()),
                    )
                    .collect();
                if !members.is_empty() && !cascade {
                    return Err(EngineError::SchemaNotEmpty(name.clone()));
                }
                for member in members {
                    remove_relation(m, name, &member, &mut out);
                }
                m.schemas.retain(|s| s != name);
            }
            CatalogChange::PublishTable { def, replace } => {
                if *replace && m.table(&def.schema, &def.name).is_some() {
                    remove_relation(m, &def.schema, &def.name, &mut out);
                }
                check_free(m, &def.schema, &def.name)?;
                m.tables.push(def.clone());
            }
            CatalogChange::CreateView {
                def,
                provider,
                or_replace,
            } => {
                if *or_replace && m.view(&def.schema, &def.name).is_some() {
                    m.views
                        .retain(|v| !(v.schema == def.schema && v.name == def.name));
                }
                check_free(m, &def.schema, &def.name)?;
                m.views.push(def.clone());
                out.planned.push(PlannedEffect::Set(
                    key(&def.schema, &def.name),
                    provider.clone(),
                ));
            }
            CatalogChange::CreateExternal {
                def,
                provider,
                or_replace,
            } => {
                if *or_replace {
                    m.external
                        .retain(|e| !(e.schema == def.schema && e.name == def.name));
                }
                check_free(m, &def.schema, &def.name)?;
                m.external.push(def.clone());
                out.planned.push(PlannedEffect::Set(
                    key(&def.schema, &def.name),
                    provider.clone(),
                ));
            }
            CatalogChange::Drop {
                schema,
                name,
                expect,
                if_exists,
                expect_files,
            } => {
                let Some(kind) = m.relation_kind(schema, name) else {
                    if *if_exists {
                        out.changed = false;
                        return Ok(out);
                    }
                    return Err(EngineError::RelationNotFound(name.clone()));
                };
                let is_view = kind == RelationKind::View;
                if is_view != (*expect == RelationKind::View) {
                    return Err(if is_view {
                        EngineError::NotATable(name.clone())
                    } else {
                        EngineError::NotAView(name.clone())
                    });
                }
                if let Some(t) = m.table(schema, name) {
                    unchanged_since(t, expect_files)?;
                }
                remove_relation(m, schema, name, &mut out);
            }
            CatalogChange::Rename { schema, from, to } => {
                if !m.has_relation(schema, from) {
                    return Err(EngineError::RelationNotFound(from.clone()));
                }
                if m.has_relation(schema, to) {
                    return Err(EngineError::RelationExists(to.clone()));
                }
                let planned = matches!(
                    m.relation_kind(schema, from),
                    Some(RelationKind::View | RelationKind::External)
                );
                for t in m
                    .tables
                    .iter_mut()
                    .filter(|t| &t.schema == schema && &t.name == from)
                {
                    t.name = to.clone();
                }
                for v in m
                    .views
                    .iter_mut()
                    .filter(|v| &v.schema == schema && &v.name == from)
                {
                    v.name = to.clone();
                }
                for e in m
                    .external
                    .iter_mut()
                    .filter(|e| &e.schema == schema && &e.name == from)
                {
                    e.name = to.clone();
                }
                if planned {
                    out.planned
                        .push(PlannedEffect::Move(key(schema, from), key(schema, to)));
                }
            }
            CatalogChange::SetSortOrder {
                schema,
                name,
                sort_by,
                expect_files,
            } => {
                let Some(t) = m.table_mut(schema, name) else {
                    return Err(m.not_a_table(schema, name));
                };
                unchanged_since(t, expect_files)?;
                t.sort_by = sort_by.clone();
            }
            CatalogChange::Comment {
                schema,
                name,
                comment,
            } => {
                if let Some(t) = m.table_mut(schema, name) {
                    t.comment = comment.clone();
                } else if let Some(v) = m
                    .views
                    .iter_mut()
                    .find(|v| &v.schema == schema && &v.name == name)
                {
                    v.comment = comment.clone();
                } else {
                    return Err(EngineError::RelationNotFound(name.clone()));
                }
            }
        }
        Ok(out)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn table(id: u64, name: &str) -> TableDef {
        TableDef {
            id,
            schema: "public".into(),
            name: name.into(),
            columns: vec![],
            files: vec![format!("f{id}")],
            rows: 1,
            comment: None,
            sort_by: vec![],
        }
    }

    /// An order change recorded in a block fails if the table's files changed since it
    /// rewrote them, and is refused for a view.
    #[test]
    fn order_changes_check_what_the_block_rewrote() {
        let mut m = Manifest::default();
        m.tables.push(table(7, "t"));
        m.views.push(ViewDef {
            schema: "public".into(),
            name: "v".into(),
            definition: "CREATE VIEW v AS SELECT 1".into(),
            comment: None,
        });
        let set = |name: &str, files: &[&str]| CatalogChange::SetSortOrder {
            schema: "public".into(),
            name: name.into(),
            sort_by: vec!["a".into()],
            expect_files: Some((7, files.iter().map(|f| f.to_string()).collect())),
        };
        assert!(matches!(
            set("t", &["older"]).apply(&mut m.clone()),
            Err(EngineError::ConcurrentWrite(_))
        ));
        assert!(matches!(
            set("v", &[]).apply(&mut m.clone()),
            Err(EngineError::NotATable(_))
        ));
        assert!(matches!(
            set("gone", &[]).apply(&mut m.clone()),
            Err(EngineError::RelationNotFound(_))
        ));
        set("t", &["f7"]).apply(&mut m).expect("applies");
        assert_eq!(m.tables[0].sort_by, ["a"]);
    }

    /// A drop recorded in a block with the files it saw fails if the table changed since,
    /// and a cascade lists every dropped table's folder.
    #[test]
    fn drops_check_what_the_block_saw_and_report_folders() {
        let mut m = Manifest::default();
        m.tables.push(table(7, "t"));
        let stale = CatalogChange::Drop {
            schema: "public".into(),
            name: "t".into(),
            expect: RelationKind::Table,
            if_exists: false,
            expect_files: Some((7, vec!["older".into()])),
        };
        assert!(matches!(
            stale.apply(&mut m.clone()),
            Err(EngineError::ConcurrentWrite(_))
        ));
        let current = CatalogChange::Drop {
            schema: "public".into(),
            name: "t".into(),
            expect: RelationKind::Table,
            if_exists: false,
            expect_files: Some((7, vec!["f7".into()])),
        };
        let applied = current.apply(&mut m.clone()).expect("drops");
        assert_eq!(applied.dropped_tables, vec![7]);

        m.schemas.push("s".into());
        let mut other = table(8, "u");
        other.schema = "s".into();
        m.tables.push(other);
        let refused = CatalogChange::DropSchema {
            name: "s".into(),
            if_exists: false,
            cascade: false,
        };
        assert!(matches!(
            refused.apply(&mut m.clone()),
            Err(EngineError::SchemaNotEmpty(_))
        ));
        let cascade = CatalogChange::DropSchema {
            name: "s".into(),
            if_exists: false,
            cascade: true,
        };
        let applied = cascade.apply(&mut m).expect("drops");
        assert_eq!(applied.dropped_tables, vec![8]);
        assert!(!m.schemas.contains(&"s".to_string()));
        assert_eq!(m.tables.len(), 1);
    }
}
