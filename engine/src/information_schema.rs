//! `information_schema` with PostgreSQL type names, built from a session's view of the
//! catalog each time a query plans against it.

use std::sync::{Arc, Weak};

use async_trait::async_trait;
use datafusion::arrow::array::{ArrayRef, Int32Array, RecordBatch, StringArray};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{CatalogProvider, MemTable, SchemaProvider, TableProvider};
use datafusion::error::Result;
use datafusion::logical_expr::TableType;

use crate::catalog::{DurableSchema, SessionCatalog, TEMP_SCHEMA};
use crate::pg_types::{pg_numeric_precision, pg_type_name, pg_udt_name};

const TABLES: [&str; 4] = ["schemata", "tables", "columns", "views"];

/// The constraint views, with PostgreSQL's columns and no rows: flashsql tables declare no
/// keys or checks (Metabase, DBeaver and ORMs join them when they describe a table).
const CONSTRAINT_TABLES: [(&str, &[&str]); 5] = [
    (
        "table_constraints",
        &[
            "constraint_catalog",
            "constraint_schema",
            "constraint_name",
            "table_catalog",
            "table_schema",
            "table_name",
            "constraint_type",
            "is_deferrable",
            "initially_deferred",
            "enforced",
            "nulls_distinct",
        ],
    ),
    (
        "key_column_usage",
        &[
            "constraint_catalog",
            "constraint_schema",
            "constraint_name",
            "table_catalog",
            "table_schema",
            "table_name",
            "column_name",
            "ordinal_position",
            "position_in_unique_constraint",
        ],
    ),
    (
        "constraint_column_usage",
        &[
            "table_catalog",
            "table_schema",
            "table_name",
            "column_name",
            "constraint_catalog",
            "constraint_schema",
            "constraint_name",
        ],
    ),
    (
        "referential_constraints",
        &[
            "constraint_catalog",
            "constraint_schema",
            "constraint_name",
            "unique_constraint_catalog",
            "unique_constraint_schema",
            "unique_constraint_name",
            "match_option",
            "update_rule",
            "delete_rule",
        ],
    ),
    (
        "check_constraints",
        &[
            "constraint_catalog",
            "constraint_schema",
            "constraint_name",
            "check_clause",
        ],
    ),
];

/// One of `CONSTRAINT_TABLES`, empty.
fn constraint_table(name: &str) -> Option<Result<MemTable>> {
    let (_, columns) = CONSTRAINT_TABLES.iter().find(|(n, _)| *n == name)?;
    let fields: Vec<Field> = columns
        .iter()
        .map(|c| {
            let t = if c.contains("position") {
                DataType::Int32
            } else {
                DataType::Utf8
            };
            Field::new(*c, t, true)
        })
        .collect();
    Some(MemTable::try_new(
        Arc::new(Schema::new(fields)),
        vec![vec![]],
    ))
}

#[derive(Debug)]
pub struct InformationSchema {
    catalog: Weak<SessionCatalog>,
    catalog_name: String,
}

impl InformationSchema {
    pub fn new(catalog: Weak<SessionCatalog>, catalog_name: &str) -> Self {
        Self {
            catalog,
            catalog_name: catalog_name.to_string(),
        }
    }
}

struct Relation {
    schema: String,
    name: String,
    kind: &'static str,
    columns: SchemaRef,
    definition: Option<String>,
}

async fn relations(cat: &SessionCatalog) -> Result<Vec<Relation>> {
    let mut out = Vec::new();
    let mut schemas = cat.manifest().schemas.clone();
    schemas.sort();
    schemas.push(TEMP_SCHEMA.to_string());
    for s in schemas {
        let provider: Arc<dyn SchemaProvider> = if s == TEMP_SCHEMA {
            cat.temp().clone()
        } else {
            Arc::new(DurableSchema::new(
                cat.store().clone(),
                &s,
                cat.transaction(),
            ))
        };
        let mut names = provider.table_names();
        names.sort();
        for n in names {
            let Some(table) = provider.table(&n).await? else {
                continue;
            };
            let kind = match (s == TEMP_SCHEMA, table.table_type()) {
                (true, _) => "LOCAL TEMPORARY",
                (_, TableType::View) => "VIEW",
                _ => "BASE TABLE",
            };
            out.push(Relation {
                schema: s.clone(),
                name: n,
                kind,
                columns: table.schema(),
                definition: table.get_table_definition().map(str::to_string),
            });
        }
    }
    Ok(out)
}

fn text(v: Vec<Option<String>>) -> ArrayRef {
    Arc::new(StringArray::from(v))
}

fn build(
    name: &str,
    catalog_name: &str,
    cat: &SessionCatalog,
    rels: &[Relation],
) -> Result<MemTable> {
    let t = |n: &str| Field::new(n, DataType::Utf8, true);
    let i = |n: &str| Field::new(n, DataType::Int32, true);
    let cname = || Some(catalog_name.to_string());
    let (fields, columns): (Vec<Field>, Vec<ArrayRef>) = match name {
        "schemata" => {
            let mut schemas: Vec<String> = cat.schema_names();
            schemas.push(TEMP_SCHEMA.to_string());
            schemas.sort();
            schemas.dedup();
            (
                vec![t("catalog_name"), t("schema_name"), t("schema_owner")],
                vec![
                    text(schemas.iter().map(|_| cname()).collect()),
                    text(schemas.iter().cloned().map(Some).collect()),
                    text(
                        schemas
                            .iter()
                            .map(|_| Some("flashsql".to_string()))
                            .collect(),
                    ),
                ],
            )
        }
        "tables" => (
            vec![
                t("table_catalog"),
                t("table_schema"),
                t("table_name"),
                t("table_type"),
                t("is_insertable_into"),
            ],
            vec![
                text(rels.iter().map(|_| cname()).collect()),
                text(rels.iter().map(|r| Some(r.schema.clone())).collect()),
                text(rels.iter().map(|r| Some(r.name.clone())).collect()),
                text(rels.iter().map(|r| Some(r.kind.to_string())).collect()),
                text(
                    rels.iter()
                        .map(|r| Some(if r.kind == "VIEW" { "NO" } else { "YES" }.to_string()))
                        .collect(),
                ),
            ],
        ),
        "views" => {
            let views: Vec<&Relation> = rels.iter().filter(|r| r.kind == "VIEW").collect();
            (
                vec![
                    t("table_catalog"),
                    t("table_schema"),
                    t("table_name"),
                    t("view_definition"),
                ],
                vec![
                    text(views.iter().map(|_| cname()).collect()),
                    text(views.iter().map(|r| Some(r.schema.clone())).collect()),
                    text(views.iter().map(|r| Some(r.name.clone())).collect()),
                    text(views.iter().map(|r| r.definition.clone()).collect()),
                ],
            )
        }
        _ => {
            let mut c: [Vec<Option<String>>; 8] = Default::default();
            let mut pos = Vec::new();
            let mut prec = Vec::new();
            let mut scale = Vec::new();
            for r in rels {
                for (k, f) in r.columns.fields().iter().enumerate() {
                    c[0].push(cname());
                    c[1].push(Some(r.schema.clone()));
                    c[2].push(Some(r.name.clone()));
                    c[3].push(Some(f.name().clone()));
                    c[4].push(None);
                    c[5].push(Some(if f.is_nullable() { "YES" } else { "NO" }.to_string()));
                    c[6].push(Some(pg_type_name(f.data_type()).to_string()));
                    c[7].push(Some(pg_udt_name(f.data_type())));
                    pos.push(Some(k as i32 + 1));
                    let (p, s) = pg_numeric_precision(f.data_type());
                    prec.push(p);
                    scale.push(s);
                }
            }
            let [c0, c1, c2, c3, c4, c5, c6, c7] = c;
            let rows = c0.len();
            let constant = |v: &str| text(vec![Some(v.to_string()); rows]);
            (
                vec![
                    t("table_catalog"),
                    t("table_schema"),
                    t("table_name"),
                    t("column_name"),
                    i("ordinal_position"),
                    t("column_default"),
                    t("is_nullable"),
                    t("data_type"),
                    i("character_maximum_length"),
                    i("numeric_precision"),
                    i("numeric_scale"),
                    t("udt_name"),
                    t("udt_catalog"),
                    t("udt_schema"),
                    t("is_identity"),
                    t("identity_generation"),
                    t("is_generated"),
                    t("generation_expression"),
                    t("is_updatable"),
                    t("collation_name"),
                    t("domain_name"),
                    i("datetime_precision"),
                    i("character_octet_length"),
                ],
                vec![
                    text(c0),
                    text(c1),
                    text(c2),
                    text(c3),
                    Arc::new(Int32Array::from(pos)),
                    text(c4),
                    text(c5),
                    text(c6),
                    Arc::new(Int32Array::from(vec![None::<i32>; prec.len()])),
                    Arc::new(Int32Array::from(prec)),
                    Arc::new(Int32Array::from(scale)),
                    text(c7),
                    // Every column's type is a built-in one; no column is an identity,
                    // generated, or of a domain.
                    text(vec![cname(); rows]),
                    constant("pg_catalog"),
                    constant("NO"),
                    text(vec![None; rows]),
                    constant("NEVER"),
                    text(vec![None; rows]),
                    constant("YES"),
                    text(vec![None; rows]),
                    text(vec![None; rows]),
                    Arc::new(Int32Array::from(vec![None::<i32>; rows])),
                    Arc::new(Int32Array::from(vec![None::<i32>; rows])),
                ],
            )
        }
    };
    let schema = Arc::new(Schema::new(fields));
    let batch = RecordBatch::try_new(schema.clone(), columns)?;
    MemTable::try_new(schema, vec![vec![batch]])
}

#[async_trait]
impl SchemaProvider for InformationSchema {
    fn table_names(&self) -> Vec<String> {
        TABLES
            .iter()
            .chain(CONSTRAINT_TABLES.iter().map(|(n, _)| n))
            .map(|s| s.to_string())
            .collect()
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        if let Some(table) = constraint_table(name) {
            return Ok(Some(Arc::new(table?)));
        }
        if !TABLES.contains(&name) {
            return Ok(None);
        }
        let Some(cat) = self.catalog.upgrade() else {
            return Ok(None);
        };
        let rels = relations(&cat).await?;
        Ok(Some(Arc::new(build(
            name,
            &self.catalog_name,
            &cat,
            &rels,
        )?)))
    }

    fn table_exist(&self, name: &str) -> bool {
        TABLES.contains(&name) || CONSTRAINT_TABLES.iter().any(|(n, _)| *n == name)
    }
}
