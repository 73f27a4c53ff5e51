//! The catalog file: the single commit point of the data directory.
//!
//! Every durable change (a new table, an appended file, a rename, a view) is made visible by
//! atomically replacing `catalog.json`; table files that the catalog does not name are
//! leftovers of interrupted writes and are removed at start-up.

use std::collections::BTreeMap;
use std::str::FromStr;
use std::sync::Arc;

use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use serde::{Deserialize, Serialize};

use crate::error::EngineError;

pub const FORMAT_VERSION: u32 = 1;

#[derive(Debug, Clone, Serialize, Deserialize, PartialEq)]
pub struct ColumnDef {
    pub name: String,
    /// Arrow's textual form of the type (`Int64`, `Timestamp(µs)`…), parsed back with `FromStr`.
    #[serde(rename = "type")]
    pub data_type: String,
    pub nullable: bool,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct TableDef {
    /// Stable identifier: names the table's folder, so a rename moves no file.
    pub id: u64,
    pub schema: String,
    pub name: String,
    pub columns: Vec<ColumnDef>,
    /// Data files, relative to the table's folder, in append order.
    pub files: Vec<String>,
    #[serde(default)]
    pub rows: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
    /// Columns every file of the table is sorted by, ascending with NULLs last (`WITH
    /// (sort_by = …)`): scans declare that order, so windows and merges per user skip their
    /// sort, and row groups cover narrow key ranges that statistics prune.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub sort_by: Vec<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ViewDef {
    pub schema: String,
    pub name: String,
    /// The `CREATE VIEW` statement as written; only its query is replanned at start-up.
    pub definition: String,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub comment: Option<String>,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct ExternalDef {
    pub schema: String,
    pub name: String,
    /// The `CREATE EXTERNAL TABLE` statement as written; replanned at start-up.
    pub definition: String,
}

#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Manifest {
    pub format_version: u32,
    pub next_id: u64,
    pub schemas: Vec<String>,
    pub tables: Vec<TableDef>,
    pub views: Vec<ViewDef>,
    #[serde(default)]
    pub external: Vec<ExternalDef>,
    /// Free-form facts about the data directory (e.g. the generated world's scale and seed).
    #[serde(default)]
    pub properties: BTreeMap<String, String>,
}

impl Default for Manifest {
    fn default() -> Self {
        Self {
            format_version: FORMAT_VERSION,
            next_id: 1,
            schemas: vec!["public".to_string()],
            tables: Vec::new(),
            views: Vec::new(),
            external: Vec::new(),
            properties: BTreeMap::new(),
        }
    }
}

/// A relation's kind, as the catalog knows it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum RelationKind {
    Table,
    View,
    External,
}

impl Manifest {
    pub fn relation_kind(&self, schema: &str, name: &str) -> Option<RelationKind> {
        if self.table(schema, name).is_some() {
            Some(RelationKind::Table)
        } else if self.view(schema, name).is_some() {
            Some(RelationKind::View)
        } else if self
            .external
            .iter()
            .any(|e| e.schema == schema && e.name == name)
        {
            Some(RelationKind::External)
        } else {
            None
        }
    }

    pub fn has_schema(&self, schema: &str) -> bool {
        self.schemas.iter().any(|s| s == schema)
    }

    pub fn has_relation(&self, schema: &str, name: &str) -> bool {
        self.relation_kind(schema, name).is_some()
    }

    pub fn table(&self, schema: &str, name: &str) -> Option<&TableDef> {
        self.tables
            .iter()
            .find(|t| t.schema == schema && t.name == name)
    }

    /// Why `schema.name` is not a table here: it is another kind of relation (42809), or
    /// there is none (42P01).
    pub fn not_a_table(&self, schema: &str, name: &str) -> EngineError {
        if self.has_relation(schema, name) {
            EngineError::NotATable(name.to_string())
        } else {
            EngineError::RelationNotFound(name.to_string())
        }
    }

    pub fn table_mut(&mut self, schema: &str, name: &str) -> Option<&mut TableDef> {
        self.tables
            .iter_mut()
            .find(|t| t.schema == schema && t.name == name)
    }

    pub fn view(&self, schema: &str, name: &str) -> Option<&ViewDef> {
        self.views
            .iter()
            .find(|v| v.schema == schema && v.name == name)
    }
}

/// The catalog's columns for a new table of `schema` (text views, which scans produce, are
/// stored in their contiguous forms: see [`crate::text_views`]).
pub fn columns_of(schema: &Schema) -> Vec<ColumnDef> {
    schema
        .fields()
        .iter()
        .map(|f| ColumnDef {
            name: f.name().clone(),
            data_type: crate::text_views::stored_type(f.data_type()).to_string(),
            nullable: f.is_nullable(),
        })
        .collect()
}

pub fn schema_of(columns: &[ColumnDef]) -> Result<SchemaRef, EngineError> {
    let fields = columns
        .iter()
        .map(|c| {
            DataType::from_str(&c.data_type)
                .map(|t| Field::new(&c.name, t, c.nullable))
                .map_err(|e| EngineError::CorruptCatalog {
                    path: "catalog.json".into(),
                    reason: format!("column {}: {e}", c.name),
                })
        })
        .collect::<Result<Vec<_>, _>>()?;
    Ok(Arc::new(Schema::new(fields)))
}

#[cfg(test)]
mod tests {
    use super::*;
    use datafusion::arrow::datatypes::TimeUnit;

    #[test]
    fn column_types_round_trip_through_text() {
        let schema = Schema::new(vec![
            Field::new("a", DataType::Int64, false),
            Field::new("b", DataType::Utf8, true),
            Field::new("c", DataType::Timestamp(TimeUnit::Microsecond, None), true),
            Field::new(
                "d",
                DataType::List(Arc::new(Field::new_list_field(DataType::Float32, true))),
                true,
            ),
            Field::new("e", DataType::Decimal128(12, 2), true),
        ]);
        let back = schema_of(&columns_of(&schema)).unwrap();
        assert_eq!(back.as_ref(), &schema);
    }
}
