//! `pg_catalog` for a session, set up so that a closed session frees everything it held.
//!
//! datafusion-pg-catalog's `setup_pg_catalog` has two costs we cannot accept per connection:
//! its `pg_catalog` schema holds a strong reference to the context's catalog list, which
//! holds our session catalog, which holds that schema — a reference cycle, so no session was
//! ever freed (about 5 MB per connection) — and it decodes PostgreSQL's static catalog tables
//! anew for every session. Here the schema reads the catalog list through a weak reference,
//! and the static tables are decoded once per process and shared (they are immutable).
//! Everything else is registered as `setup_pg_catalog` does.

use std::sync::{Arc, OnceLock, Weak};

use async_trait::async_trait;
use datafusion::arrow::array::{
    Array, ArrayRef, AsArray, BooleanArray, Int32Array, Int32Builder, ListBuilder, RecordBatch,
    StringArray, StringBuilder,
};
use datafusion::arrow::datatypes::{DataType, Field, Schema, SchemaRef};
use datafusion::catalog::{
    CatalogProviderList, MemTable, SchemaProvider, TableFunctionImpl, TableProvider,
};
use datafusion::datasource::{TableType, ViewTable, provider_as_source};
use datafusion::error::{DataFusionError, Result};
use datafusion::execution::session_state::SessionStateBuilder;
use datafusion::logical_expr::{Expr, LogicalPlanBuilder, ScalarUDF, TypeSignature, Volatility};
use datafusion::prelude::SessionContext;
use datafusion::scalar::ScalarValue;
use datafusion_pg_catalog::pg_catalog::catalog_info::CatalogInfo;

use crate::settings::Settings;
use datafusion_pg_catalog::pg_catalog::context::EmptyContextProvider;
use datafusion_pg_catalog::pg_catalog::generate_series_arg_coercion::CoerceIntArgsToBigInt;
use datafusion_pg_catalog::pg_catalog::oid_type_planner::PgOidTypePlanner;
use datafusion_pg_catalog::pg_catalog::{
    self as pgc, PgCatalogSchemaProvider, PgCatalogStaticTables, array_bounds_udf, format_type,
    has_privilege_udf, pg_get_expr_udf, quote_ident_udf,
};

/// The catalog list of a session, seen without keeping the session alive.
#[derive(Clone, Debug)]
struct SessionCatalogs(Weak<dyn CatalogProviderList>);

impl SessionCatalogs {
    fn get(&self) -> Result<Arc<dyn CatalogProviderList>> {
        self.0
            .upgrade()
            .ok_or_else(|| DataFusionError::Execution("the session has ended".into()))
    }
}

#[async_trait]
impl CatalogInfo for SessionCatalogs {
    async fn catalog_names(&self) -> Result<Vec<String>> {
        CatalogInfo::catalog_names(&self.get()?).await
    }

    async fn schema_names(&self, catalog_name: &str) -> Result<Option<Vec<String>>> {
        CatalogInfo::schema_names(&self.get()?, catalog_name).await
    }

    async fn table_names(&self, catalog: &str, schema: &str) -> Result<Option<Vec<String>>> {
        CatalogInfo::table_names(&self.get()?, catalog, schema).await
    }

    async fn table_schema(
        &self,
        catalog: &str,
        schema: &str,
        table: &str,
    ) -> Result<Option<SchemaRef>> {
        CatalogInfo::table_schema(&self.get()?, catalog, schema, table).await
    }

    async fn table_type(
        &self,
        catalog: &str,
        schema: &str,
        table: &str,
    ) -> Result<Option<TableType>> {
        CatalogInfo::table_type(&self.get()?, catalog, schema, table).await
    }
}

/// `pg_catalog` with `pg_tables` and `pg_views` that tell tables from views: the library's
/// `pg_tables` lists every relation and its `pg_views` is empty, so dbt took a view model
/// for a table and dropped it with `DROP TABLE` on the next run. `pg_settings` lists the
/// session's parameters (pgjdbc reads `max_index_keys` there); `pg_index` and
/// `pg_constraint` are empty, as flashsql has neither. Everything else is the library's.
#[derive(Debug)]
struct PgCatalog {
    inner: Arc<dyn SchemaProvider>,
    catalogs: SessionCatalogs,
    /// The session's parameters, listed by `pg_settings` (the library's lists one).
    settings: Arc<Settings>,
}

/// One relation as `pg_tables`/`pg_views` list it.
struct Relation {
    schema: String,
    name: String,
    /// The definition, for a view.
    view: Option<String>,
}

/// Schemas whose relations are all listed as tables without being opened (they are built
/// per query, and PostgreSQL lists its own catalogs in `pg_tables` too).
pub(crate) const SYSTEM_SCHEMAS: [&str; 2] = ["pg_catalog", "information_schema"];

/// Columns of `pg_index` and `pg_constraint` that PostgreSQL types as arrays of smallint
/// (the library keeps them as text, which clients cannot subscript).
const SMALLINT_ARRAYS: [&str; 6] = [
    "indkey",
    "indcollation",
    "indclass",
    "indoption",
    "conkey",
    "confkey",
];

impl PgCatalog {
    /// Every relation the session sees.
    async fn relations(&self) -> Result<Vec<Relation>> {
        let list = self.catalogs.get()?;
        let mut out = Vec::new();
        for catalog_name in CatalogProviderList::catalog_names(list.as_ref()) {
            let Some(catalog) = list.catalog(&catalog_name) else {
                continue;
            };
            for schema_name in catalog.schema_names() {
                let Some(schema) = catalog.schema(&schema_name) else {
                    continue;
                };
                let system = SYSTEM_SCHEMAS.contains(&schema_name.as_str());
                for table in schema.table_names() {
                    let view = if system {
                        None
                    } else {
                        match schema.table_type(&table).await? {
                            Some(TableType::View) => Some(
                                schema
                                    .table(&table)
                                    .await?
                                    .and_then(|v| v.get_table_definition().map(str::to_string))
                                    .unwrap_or_default(),
                            ),
                            Some(_) => None,
                            None => continue,
                        }
                    };
                    out.push(Relation {
                        schema: schema_name.clone(),
                        name: table,
                        view,
                    });
                }
            }
        }
        Ok(out)
    }

    async fn pg_tables(&self) -> Result<Arc<dyn TableProvider>> {
        let rows: Vec<_> = self
            .relations()
            .await?
            .into_iter()
            .filter(|r| r.view.is_none())
            .collect();
        let text = |f: &dyn Fn(&Relation) -> Option<String>| -> ArrayRef {
            Arc::new(rows.iter().map(f).collect::<StringArray>())
        };
        let no = || -> ArrayRef { Arc::new(BooleanArray::from(vec![false; rows.len()])) };
        let schema = Arc::new(Schema::new(vec![
            Field::new("schemaname", DataType::Utf8, false),
            Field::new("tablename", DataType::Utf8, false),
            Field::new("tableowner", DataType::Utf8, false),
            Field::new("tablespace", DataType::Utf8, true),
            Field::new("hasindexes", DataType::Boolean, false),
            Field::new("hasrules", DataType::Boolean, false),
            Field::new("hastriggers", DataType::Boolean, false),
            Field::new("rowsecurity", DataType::Boolean, false),
        ]));
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                text(&|r| Some(r.schema.clone())),
                text(&|r| Some(r.name.clone())),
                text(&|_| Some(crate::auth::USER.to_string())),
                text(&|_| None),
                no(),
                no(),
                no(),
                no(),
            ],
        )?;
        Ok(Arc::new(MemTable::try_new(schema, vec![vec![batch]])?))
    }

    async fn pg_views(&self) -> Result<Arc<dyn TableProvider>> {
        let rows: Vec<_> = self
            .relations()
            .await?
            .into_iter()
            .filter(|r| r.view.is_some())
            .collect();
        let schema = Arc::new(Schema::new(vec![
            Field::new("schemaname", DataType::Utf8, false),
            Field::new("viewname", DataType::Utf8, false),
            Field::new("viewowner", DataType::Utf8, false),
            Field::new("definition", DataType::Utf8, false),
        ]));
        let col = |f: &dyn Fn(&Relation) -> String| -> ArrayRef {
            Arc::new(StringArray::from_iter_values(rows.iter().map(f)))
        };
        let batch = RecordBatch::try_new(
            schema.clone(),
            vec![
                col(&|r| r.schema.clone()),
                col(&|r| r.name.clone()),
                col(&|_| crate::auth::USER.to_string()),
                col(&|r| r.view.clone().unwrap_or_default()),
            ],
        )?;
        Ok(Arc::new(MemTable::try_new(schema, vec![vec![batch]])?))
    }

    /// `pg_index` or `pg_constraint` without rows: flashsql tables have no indexes and no
    /// constraints (the library lists PostgreSQL's own, for tables that do not exist here),
    /// with array columns typed as PostgreSQL types them, so that pgjdbc's `getIndexInfo`
    /// and `getImportedKeys` (`con.conkey[pos.n]`) plan and answer "none".
    async fn without_rows(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        let Some(inner) = self.inner.table(name).await? else {
            return Ok(None);
        };
        let fields: Vec<Field> = inner
            .schema()
            .fields()
            .iter()
            .map(|f| {
                if SMALLINT_ARRAYS.contains(&f.name().as_str()) {
                    Field::new(f.name(), DataType::new_list(DataType::Int16, true), true)
                } else {
                    f.as_ref().clone()
                }
            })
            .collect();
        let mut fields = fields;
        for (column, value) in extra_columns(name)? {
            if !fields.iter().any(|f| f.name() == column) {
                fields.push(Field::new(column, value.data_type(), true));
            }
        }
        let schema = Arc::new(Schema::new(fields));
        Ok(Some(Arc::new(MemTable::try_new(schema, vec![vec![]])?)))
    }

    /// A library table with the columns of PostgreSQL's that it lacks (`EXTRA_COLUMNS`),
    /// as constants: `pg_class.reloptions` (SQLAlchemy's index reflection), `relacl` (psql's
    /// `\dp`, pgAdmin), the `tableoid` system column (pgAdmin joins `pg_depend` on it).
    async fn with_extra_columns(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        let Some(inner) = self.inner.table(name).await? else {
            return Ok(None);
        };
        let missing: Vec<(&str, ScalarValue)> = extra_columns(name)?
            .into_iter()
            .filter(|(c, _)| inner.schema().column_with_name(c).is_none())
            .collect();
        let retyped = |c: &str| {
            let text = inner
                .schema()
                .field_with_name(c)
                .is_ok_and(|f| f.data_type() == &DataType::Utf8);
            if !text {
                None
            } else if OID_LIST_COLUMNS.contains(&(name, c)) {
                Some(oid_list_udf())
            } else if TEXT_LIST_COLUMNS.contains(&(name, c)) {
                Some(text_list_udf())
            } else {
                None
            }
        };
        let any_retyped = inner
            .schema()
            .fields()
            .iter()
            .any(|f| retyped(f.name()).is_some());
        if missing.is_empty() && !any_retyped {
            return Ok(Some(inner));
        }
        let scan =
            LogicalPlanBuilder::scan(name, provider_as_source(inner.clone()), None)?.build()?;
        let mut columns: Vec<Expr> = scan
            .schema()
            .columns()
            .into_iter()
            .map(|c| match retyped(&c.name) {
                // Arrays in PostgreSQL that the library keeps as their text: `proargtypes`
                // (oidvector) and `proallargtypes` (oid[]) are cast as arrays (pgcli:
                // `proargtypes::regtype[]`), `polroles` searched with `= ANY`, the ACLs and
                // settings joined with `array_to_string` (psql's `\dp`, `\drds`).
                Some(udf) => {
                    let name = c.name.clone();
                    udf.call(vec![Expr::Column(c)]).alias(name)
                }
                None => Expr::Column(c),
            })
            .collect();
        for (column, value) in missing {
            columns.push(Expr::Literal(value, None).alias(column));
        }
        let plan = LogicalPlanBuilder::from(scan).project(columns)?.build()?;
        Ok(Some(Arc::new(ViewTable::new(plan, None))))
    }

    /// `pg_roles` and `pg_user`: the session's own role (the library lists none, and
    /// pgAdmin reads the connected role's rights from `pg_roles` where `rolname =
    /// current_user`; its recovery check reads `pg_user`).
    async fn roles(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        let user = self
            .settings
            .get("session_authorization")
            .unwrap_or_default();
        let superuser = self.settings.get("is_superuser").as_deref() == Some("on");
        if name == "pg_user" {
            let schema = Arc::new(Schema::new(vec![
                Field::new("usename", DataType::Utf8, true),
                Field::new("usesysid", DataType::Int32, true),
                Field::new("usecreatedb", DataType::Boolean, true),
                Field::new("usesuper", DataType::Boolean, true),
                Field::new("userepl", DataType::Boolean, true),
                Field::new("usebypassrls", DataType::Boolean, true),
                Field::new("passwd", DataType::Utf8, true),
                Field::new("valuntil", DataType::Utf8, true),
                Field::new("useconfig", DataType::new_list(DataType::Utf8, true), true),
            ]));
            let batch = RecordBatch::try_new(
                schema.clone(),
                vec![
                    Arc::new(StringArray::from(vec![user])),
                    Arc::new(Int32Array::from(vec![ROLE_OID])),
                    Arc::new(BooleanArray::from(vec![superuser])),
                    Arc::new(BooleanArray::from(vec![superuser])),
                    Arc::new(BooleanArray::from(vec![false])),
                    Arc::new(BooleanArray::from(vec![superuser])),
                    Arc::new(StringArray::from(vec!["********"])),
                    null_column(&DataType::Utf8)?,
                    null_column(&DataType::new_list(DataType::Utf8, true))?,
                ],
            )?;
            return Ok(Some(Arc::new(MemTable::try_new(
                schema,
                vec![vec![batch]],
            )?)));
        }
        let Some(inner) = self.inner.table(name).await? else {
            return Ok(None);
        };
        let fields: Vec<Field> = inner
            .schema()
            .fields()
            .iter()
            .map(|f| f.as_ref().clone().with_nullable(true))
            .collect();
        let schema = Arc::new(Schema::new(fields));
        let columns = schema
            .fields()
            .iter()
            .map(|f| match (f.name().as_str(), f.data_type()) {
                ("rolname", DataType::Utf8) => {
                    Ok(Arc::new(StringArray::from(vec![user.clone()])) as ArrayRef)
                }
                ("oid", DataType::Int32) => Ok(Arc::new(Int32Array::from(vec![ROLE_OID])) as _),
                ("rolsuper" | "rolcreaterole" | "rolcreatedb" | "rolbypassrls", _) => {
                    Ok(Arc::new(BooleanArray::from(vec![superuser])) as _)
                }
                ("rolinherit" | "rolcanlogin", _) => {
                    Ok(Arc::new(BooleanArray::from(vec![true])) as _)
                }
                ("rolreplication", _) => Ok(Arc::new(BooleanArray::from(vec![false])) as _),
                ("rolconnlimit", DataType::Int32) => Ok(Arc::new(Int32Array::from(vec![-1])) as _),
                ("rolpassword", DataType::Utf8) => {
                    Ok(Arc::new(StringArray::from(vec!["********"])) as _)
                }
                (_, t) => null_column(t),
            })
            .collect::<Result<Vec<_>>>()?;
        let batch = RecordBatch::try_new(schema.clone(), columns)?;
        Ok(Some(Arc::new(MemTable::try_new(
            schema,
            vec![vec![batch]],
        )?)))
    }

    fn pg_settings(&self) -> Result<Arc<dyn TableProvider>> {
        settings_table(&self.settings)
    }
}

/// The oid `pg_roles` and `pg_user` give the session's role (PostgreSQL's bootstrap
/// superuser's).
const ROLE_OID: i32 = 10;

/// One row's column of `data_type` holding NULL.
fn null_column(data_type: &DataType) -> Result<ArrayRef> {
    ScalarValue::try_from(data_type)?.to_array_of_size(1)
}

/// Columns that hold lists of oids or column numbers in PostgreSQL (`oid[]`, `oidvector`,
/// `int2vector`) and text in the library.
const OID_LIST_COLUMNS: [(&str, &str); 4] = [
    ("pg_proc", "proargtypes"),
    ("pg_proc", "proallargtypes"),
    ("pg_policy", "polroles"),
    ("pg_statistic_ext", "stxkeys"),
];

/// Columns that are `text[]` or `aclitem[]` in PostgreSQL and text in the library.
const TEXT_LIST_COLUMNS: [(&str, &str); 16] = [
    ("pg_proc", "proargnames"),
    ("pg_proc", "proargmodes"),
    ("pg_statistic_ext", "stxkind"),
    ("pg_event_trigger", "evttags"),
    ("pg_attribute", "attacl"),
    ("pg_namespace", "nspacl"),
    ("pg_database", "datacl"),
    ("pg_proc", "proacl"),
    ("pg_type", "typacl"),
    ("pg_language", "lanacl"),
    ("pg_tablespace", "spcacl"),
    ("pg_default_acl", "defaclacl"),
    ("pg_db_role_setting", "setconfig"),
    ("pg_foreign_server", "srvacl"),
    ("pg_foreign_data_wrapper", "fdwacl"),
    ("pg_largeobject_metadata", "lomacl"),
];

/// PostgreSQL's fixed oids of its catalog tables: the `tableoid` system column, which
/// clients join `pg_depend` and `pg_description` on (pgAdmin, psql's `\dd`).
const CATALOG_OIDS: [(&str, i32); 34] = [
    ("pg_aggregate", 2600),
    ("pg_am", 2601),
    ("pg_attrdef", 2604),
    ("pg_attribute", 1249),
    ("pg_authid", 1260),
    ("pg_cast", 2605),
    ("pg_class", 1259),
    ("pg_collation", 3456),
    ("pg_constraint", 2606),
    ("pg_conversion", 2607),
    ("pg_database", 1262),
    ("pg_default_acl", 826),
    ("pg_depend", 2608),
    ("pg_description", 2609),
    ("pg_enum", 3501),
    ("pg_event_trigger", 3466),
    ("pg_extension", 3079),
    ("pg_foreign_data_wrapper", 2328),
    ("pg_foreign_server", 1417),
    ("pg_index", 2610),
    ("pg_inherits", 2611),
    ("pg_language", 2612),
    ("pg_namespace", 2615),
    ("pg_opclass", 2616),
    ("pg_operator", 2617),
    ("pg_opfamily", 2753),
    ("pg_policy", 3256),
    ("pg_proc", 1255),
    ("pg_rewrite", 2618),
    ("pg_statistic_ext", 3381),
    ("pg_tablespace", 1213),
    ("pg_trigger", 2620),
    ("pg_ts_config", 3602),
    ("pg_type", 1247),
];

/// A list-valued function over text, applied to each row.
fn text_to_list_udf<T>(
    name: &'static str,
    element: DataType,
    builder: impl Fn() -> ListBuilder<T> + Send + Sync + 'static,
    push: impl Fn(&mut ListBuilder<T>, &str) + Send + Sync + 'static,
) -> ScalarUDF
where
    T: datafusion::arrow::array::ArrayBuilder,
{
    crate::compat::udf(
        name,
        vec![TypeSignature::Exact(vec![DataType::Utf8])],
        DataType::new_list(element, true),
        Volatility::Immutable,
        Arc::new(move |args, _| {
            let mut out = builder();
            for value in args[0].as_string::<i32>().iter() {
                match value {
                    None => out.append_null(),
                    Some(v) => {
                        push(&mut out, v);
                        out.append(true);
                    }
                }
            }
            Ok(Arc::new(out.finish()))
        }),
    )
}

/// Text holding oids (`16 16`, `[1034, 26]`) as a list of int4.
fn oid_list_udf() -> ScalarUDF {
    text_to_list_udf(
        "__flashsql_oid_list",
        DataType::Int32,
        || ListBuilder::new(Int32Builder::new()),
        |out, v| {
            for oid in v
                .split(|c: char| !c.is_ascii_digit())
                .filter(|t| !t.is_empty())
            {
                out.values().append_option(oid.parse::<i32>().ok());
            }
        },
    )
}

/// An array's text (`{a,b}`, or the library's `['a', 'b']`) as a list of text (no element
/// in the catalogs that hold them contains a comma or a quote).
fn text_list_udf() -> ScalarUDF {
    text_to_list_udf(
        "__flashsql_text_list",
        DataType::Utf8,
        || ListBuilder::new(StringBuilder::new()),
        |out, v| {
            let inner = v
                .trim()
                .trim_start_matches(['{', '['])
                .trim_end_matches(['}', ']']);
            for item in inner.split(',').map(str::trim).filter(|t| !t.is_empty()) {
                out.values()
                    .append_value(item.trim_matches(|c| c == '"' || c == '\''));
            }
        },
    )
}

/// `pg_user_mappings` (psql's `\deu`): no foreign servers, so no mappings.
fn user_mappings() -> Result<Arc<dyn TableProvider>> {
    let int = |n: &str| Field::new(n, DataType::Int32, true);
    let text = |n: &str| Field::new(n, DataType::Utf8, true);
    let schema = Arc::new(Schema::new(vec![
        int("umid"),
        int("srvid"),
        text("srvname"),
        int("umuser"),
        text("usename"),
        Field::new("umoptions", DataType::new_list(DataType::Utf8, true), true),
    ]));
    Ok(Arc::new(MemTable::try_new(schema, vec![vec![]])?))
}

/// The columns `with_extra_columns` adds to a library table when it lacks them.
fn extra_columns(table: &str) -> Result<Vec<(&'static str, ScalarValue)>> {
    let no_text_list = || ScalarValue::try_from(DataType::new_list(DataType::Utf8, true));
    let mut extra = match table {
        "pg_class" => vec![("reloptions", no_text_list()?), ("relacl", no_text_list()?)],
        // PostgreSQL 16's name (flashsql reports 16) of what 17 calls `colllocale`.
        "pg_collation" => vec![("colliculocale", ScalarValue::Utf8(None))],
        _ => vec![],
    };
    if let Some((_, oid)) = CATALOG_OIDS.iter().find(|(t, _)| *t == table) {
        extra.push(("tableoid", ScalarValue::Int32(Some(*oid))));
    }
    Ok(extra)
}

/// `pg_settings` (and `pg_show_all_settings()`): the session's parameters.
fn settings_table(settings: &Settings) -> Result<Arc<dyn TableProvider>> {
    let rows = settings.all();
    let text = |name: &str| Field::new(name, DataType::Utf8, true);
    let schema = Arc::new(Schema::new(vec![
        text("name"),
        text("setting"),
        text("unit"),
        text("category"),
        text("short_desc"),
        text("extra_desc"),
        text("context"),
        text("vartype"),
        text("source"),
        text("min_val"),
        text("max_val"),
        text("enumvals"),
        text("boot_val"),
        text("reset_val"),
        text("sourcefile"),
        Field::new("sourceline", DataType::Int32, true),
        Field::new("pending_restart", DataType::Boolean, true),
    ]));
    type Row = (String, String, String);
    let col = |f: &dyn Fn(&Row) -> Option<String>| -> ArrayRef {
        Arc::new(rows.iter().map(f).collect::<StringArray>())
    };
    let none = || col(&|_| None);
    let batch = RecordBatch::try_new(
        schema.clone(),
        vec![
            col(&|(name, _, _)| Some(name.clone())),
            col(&|(_, setting, _)| Some(setting.clone())),
            none(),
            none(),
            col(&|(_, _, description)| Some(description.clone())),
            none(),
            col(&|_| Some("user".into())),
            col(&|_| Some("string".into())),
            col(&|_| Some("session".into())),
            none(),
            none(),
            none(),
            none(),
            none(),
            none(),
            Arc::new(Int32Array::from(vec![None; rows.len()])),
            Arc::new(BooleanArray::from(vec![false; rows.len()])),
        ],
    )?;
    Ok(Arc::new(MemTable::try_new(schema, vec![vec![batch]])?))
}

#[async_trait]
impl SchemaProvider for PgCatalog {
    fn table_names(&self) -> Vec<String> {
        self.inner.table_names()
    }

    async fn table(&self, name: &str) -> Result<Option<Arc<dyn TableProvider>>> {
        match name.to_ascii_lowercase().as_str() {
            "pg_tables" => Ok(Some(self.pg_tables().await?)),
            "pg_views" => Ok(Some(self.pg_views().await?)),
            "pg_settings" => Ok(Some(self.pg_settings()?)),
            "pg_index" | "pg_constraint" => self.without_rows(name).await,
            "pg_roles" | "pg_user" => self.roles(name).await,
            "pg_user_mappings" => Ok(Some(user_mappings()?)),
            other => self.with_extra_columns(other).await,
        }
    }

    fn table_exist(&self, name: &str) -> bool {
        name.eq_ignore_ascii_case("pg_user")
            || name.eq_ignore_ascii_case("pg_user_mappings")
            || self.inner.table_exist(name)
    }
}

/// `pg_show_all_settings()`, the function behind `pg_settings` (pgAdmin reads it when it
/// connects). It holds the settings weakly, as `pg_catalog` holds the catalog list.
#[derive(Debug)]
struct ShowAllSettings(Weak<Settings>);

impl TableFunctionImpl for ShowAllSettings {
    fn call(&self, _args: &[Expr]) -> Result<Arc<dyn TableProvider>> {
        let settings = self
            .0
            .upgrade()
            .ok_or_else(|| DataFusionError::Execution("the session has ended".into()))?;
        settings_table(&settings)
    }
}

/// `pg_get_userbyid(oid)`: every relation is owned by flashsql's superuser, as
/// `pg_tables.tableowner` says (the library's answers `postgres`, a role that is not there).
fn owner_name_udf() -> ScalarUDF {
    crate::compat::udf(
        "pg_get_userbyid",
        vec![TypeSignature::Exact(vec![DataType::Int32])],
        DataType::Utf8,
        Volatility::Stable,
        Arc::new(|args, rows| {
            let names: StringArray = (0..rows)
                .map(|i| (!args[0].is_null(i)).then_some(crate::auth::USER))
                .collect();
            Ok(Arc::new(names))
        }),
    )
}

/// `session_user` (and `current_user`, `user`, which the compatibility parser turns into
/// it): the role the session runs as. The library's always answers `postgres`, so a tool
/// looking itself up in `pg_roles` (pgAdmin) found nothing.
fn session_user_udf(settings: Weak<Settings>) -> ScalarUDF {
    crate::compat::udf(
        "session_user",
        vec![TypeSignature::Nullary],
        DataType::Utf8,
        Volatility::Stable,
        Arc::new(move |_, rows| {
            let user = settings
                .upgrade()
                .and_then(|s| s.get("session_authorization"))
                .ok_or_else(|| DataFusionError::Execution("the session has ended".into()))?;
            Ok(Arc::new(StringArray::from(vec![user; rows])))
        }),
    )
}

/// PostgreSQL's static catalog tables, decoded on first use and shared by every session.
fn static_tables() -> Result<Arc<PgCatalogStaticTables>> {
    static TABLES: OnceLock<Arc<PgCatalogStaticTables>> = OnceLock::new();
    if let Some(t) = TABLES.get() {
        return Ok(t.clone());
    }
    let built = Arc::new(PgCatalogStaticTables::try_new()?);
    Ok(TABLES.get_or_init(|| built).clone())
}

/// Registers `pg_catalog` and PostgreSQL's catalog functions in `ctx`, whose catalog
/// `database` must exist.
pub fn setup(ctx: &SessionContext, database: &str, settings: Arc<Settings>) -> Result<()> {
    let static_tables = static_tables()?;
    let settings_for_udtf = settings.clone();
    let catalogs = SessionCatalogs(Arc::downgrade(ctx.state().catalog_list()));
    let schema = Arc::new(PgCatalog {
        inner: Arc::new(PgCatalogSchemaProvider::try_new(
            catalogs.clone(),
            static_tables.clone(),
            EmptyContextProvider,
        )?),
        catalogs,
        settings,
    });
    ctx.catalog(database)
        .ok_or_else(|| {
            DataFusionError::Configuration(format!("catalog {database} does not exist"))
        })?
        .register_schema("pg_catalog", schema)?;

    for udf in [
        pgc::create_current_database_udf(database),
        pgc::create_current_schema_udf(),
        pgc::create_current_schemas_udf(),
        owner_name_udf(),
        has_privilege_udf::create_has_privilege_udf("has_table_privilege"),
        has_privilege_udf::create_has_privilege_udf("has_schema_privilege"),
        has_privilege_udf::create_has_privilege_udf("has_database_privilege"),
        has_privilege_udf::create_has_privilege_udf("has_any_column_privilege"),
        pgc::create_pg_table_is_visible(),
        format_type::create_format_type_udf(),
        pg_get_expr_udf::create_pg_get_expr_udf(),
        pgc::create_pg_get_partkeydef_udf(),
        pgc::create_pg_relation_is_publishable_udf(),
        pgc::create_pg_get_statisticsobjdef_columns_udf(),
        pgc::create_pg_encoding_to_char_udf(),
        pgc::create_pg_backend_pid_udf(),
        pgc::create_pg_relation_size_udf(),
        pgc::create_pg_total_relation_size_udf(),
        pgc::create_pg_stat_get_numscans(),
        pgc::create_pg_get_constraintdef(),
        pgc::create_pg_get_partition_ancestors_udf(),
        quote_ident_udf::create_quote_ident_udf(),
        quote_ident_udf::create_parse_ident_udf(),
        array_bounds_udf::create_array_upper_udf(),
        array_bounds_udf::create_array_lower_udf(),
    ] {
        ctx.register_udf(udf);
    }
    ctx.register_udf(session_user_udf(Arc::downgrade(&settings_for_udtf)));
    ctx.register_udtf("pg_get_keywords", static_tables.pg_get_keywords.clone());
    ctx.register_udtf(
        "pg_show_all_settings",
        Arc::new(ShowAllSettings(Arc::downgrade(&settings_for_udtf))),
    );

    // `::regclass` and the other oid-alias type names parse (as int4).
    let state = ctx.state_ref();
    let existing = state.read().clone();
    let with_types = SessionStateBuilder::new_from_existing(existing)
        .with_type_planner(Arc::new(PgOidTypePlanner))
        .build();
    *state.write() = with_types;

    // `generate_series`/`range` accept int4 bounds.
    CoerceIntArgsToBigInt::widen(ctx);
    Ok(())
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;

    /// A session that has planned a `pg_catalog` query is freed when it is dropped: nothing
    /// it registered keeps its catalog alive.
    #[tokio::test]
    async fn a_closed_session_frees_its_catalog() {
        let (_dir, _engine, session) = crate::test_session().await;
        for statement in session
            .parse("SELECT count(*) FROM pg_catalog.pg_class")
            .expect("parses")
        {
            if let crate::session::StatementResult::Rows(df) =
                session.execute(statement, None).await.expect("plans")
            {
                assert_eq!(df.collect().await.expect("runs").len(), 1);
            }
        }
        let catalog = Arc::downgrade(session.engine_session().catalog());
        let state = Arc::downgrade(&session.engine_session().ctx().state_ref());
        drop(session);
        assert!(
            catalog.upgrade().is_none(),
            "the session catalog outlived its session"
        );
        assert!(
            state.upgrade().is_none(),
            "the session state outlived its session"
        );
    }
}
