//! Loading public e-commerce logs (and any CSV or Parquet file) into a new durable table.
//!
//! Each known source is read with its documented schema and mapped onto flashsql's data
//! model (`docs/loading.md`): behaviour logs become `events`-shaped tables (`user_id`,
//! `item_id`, `category_id`, `event_type` in view/cart/fav/purchase, `ts`, `price`,
//! `discount`, `campaign_id`), so `behavior_sequence` and `train_model` work on them as on the
//! generated world. A load is one `CREATE TABLE … AS SELECT` over the file: it streams (a
//! file larger than memory loads within the execution memory limit), writes one Parquet
//! file and publishes the table in one catalog commit — all or nothing. The file is read as
//! one partition so that rows keep the file's order and a parse error names its true line.

use std::path::Path;
use std::str::FromStr;

use datafusion::arrow::datatypes::{DataType, Field, Schema};
use datafusion::common::TableReference;
use datafusion::error::DataFusionError;
use datafusion::prelude::{CsvReadOptions, ParquetReadOptions};

use crate::catalog::TEMP_SCHEMA;
use crate::error::{EngineError, Result};
use crate::session::{Output, Session};

/// What a file holds, and so how it maps onto the data model.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Source {
    /// Tianchi UserBehavior CSV: `user_id,item_id,category_id,behavior_type,timestamp`, no
    /// header; pv → view, buy → purchase, timestamps in Unix seconds.
    Taobao,
    /// REES46 event log CSV: `event_time,event_type,product_id,category_id,category_code,
    /// brand,price,user_id,user_session`, with a header.
    Rees46,
    /// Open Bandit Dataset logged feedback: one exposure per row (item, position, click,
    /// the logging policy's propensity).
    Obd,
    /// Hillstrom's MineThatData e-mail experiment: one customer per row.
    Hillstrom,
    /// Any CSV file with a header; column types inferred.
    Csv,
    /// Any Parquet file or folder of Parquet files.
    Parquet,
}

impl FromStr for Source {
    type Err = EngineError;

    fn from_str(s: &str) -> Result<Self> {
        Ok(match s.to_ascii_lowercase().as_str() {
            "taobao" => Source::Taobao,
            "rees46" => Source::Rees46,
            "obd" => Source::Obd,
            "hillstrom" => Source::Hillstrom,
            "csv" => Source::Csv,
            "parquet" => Source::Parquet,
            other => {
                return Err(EngineError::InvalidInput(format!(
                    "unknown source \"{other}\": expected taobao, rees46, obd, hillstrom, csv or parquet"
                )));
            }
        })
    }
}

impl Source {
    pub const ALL: [&'static str; 6] = ["taobao", "rees46", "obd", "hillstrom", "csv", "parquet"];

    /// The file's columns as this source publishes them (`None`: infer).
    fn file_schema(self) -> Option<Schema> {
        let f = |name: &str, t: DataType| Field::new(name, t, true);
        use DataType::{Float64, Int64, Utf8};
        Some(Schema::new(match self {
            Source::Taobao => vec![
                f("user_id", Int64),
                f("item_id", Int64),
                f("category_id", Int64),
                f("behavior_type", Utf8),
                f("unix_seconds", Int64),
            ],
            Source::Rees46 => vec![
                f("event_time", Utf8),
                f("event_type", Utf8),
                f("product_id", Int64),
                f("category_id", Int64),
                f("category_code", Utf8),
                f("brand", Utf8),
                f("price", Float64),
                f("user_id", Int64),
                f("user_session", Utf8),
            ],
            Source::Hillstrom => vec![
                f("recency", Int64),
                f("history_segment", Utf8),
                f("history", Float64),
                f("mens", Int64),
                f("womens", Int64),
                f("zip_code", Utf8),
                f("newbie", Int64),
                f("channel", Utf8),
                f("segment", Utf8),
                f("visit", Int64),
                f("conversion", Int64),
                f("spend", Float64),
            ],
            // OBD has 80 affinity columns after the ones used here: inferred, then selected.
            Source::Obd | Source::Csv | Source::Parquet => return None,
        }))
    }

    fn has_header(self) -> bool {
        !matches!(self, Source::Taobao)
    }

    /// The order a new table of this source declares (see [`crate::sort_order`]): behaviour
    /// logs per user, in time, as the generated world's `events`.
    fn sort_by(self) -> Vec<String> {
        match self {
            Source::Taobao | Source::Rees46 => vec!["user_id".into(), "ts".into()],
            Source::Obd | Source::Hillstrom | Source::Csv | Source::Parquet => vec![],
        }
    }

    /// The select list that maps the file's columns onto the data model.
    fn mapping(self) -> &'static str {
        match self {
            Source::Taobao => {
                "user_id, item_id, category_id, \
                   CASE behavior_type WHEN 'pv' THEN 'view' WHEN 'buy' THEN 'purchase' \
                     ELSE behavior_type END AS event_type, \
                   to_timestamp_micros(unix_seconds * 1000000) AS ts, \
                   CAST(NULL AS DOUBLE) AS price, 0.0 AS discount, \
                   CAST(NULL AS BIGINT) AS campaign_id"
            }
            Source::Rees46 => {
                "user_id, product_id AS item_id, category_id, \
                   CASE event_type WHEN 'remove_from_cart' THEN 'uncart' ELSE event_type END \
                     AS event_type, \
                   to_timestamp_micros(replace(event_time, ' UTC', '')) AS ts, \
                   price, 0.0 AS discount, CAST(NULL AS BIGINT) AS campaign_id, \
                   category_code, brand, user_session"
            }
            Source::Obd => {
                "CAST(\"\" AS BIGINT) AS exposure_id, \
                   to_timestamp_micros(\"timestamp\") AS ts, \
                   CAST(item_id AS BIGINT) AS item_id, CAST(position AS BIGINT) AS position, \
                   click = 1 AS clicked, propensity_score AS propensity, \
                   user_feature_0, user_feature_1, user_feature_2, user_feature_3"
            }
            Source::Hillstrom => {
                "row_number() OVER () AS customer_id, recency, history_segment, history, \
                   mens = 1 AS mens, womens = 1 AS womens, zip_code, newbie = 1 AS newbie, \
                   channel, segment AS variant, visit = 1 AS visited, \
                   conversion = 1 AS converted, spend"
            }
            Source::Csv | Source::Parquet => "*",
        }
    }
}

impl Source {
    /// The select list for a file with `columns`: the mapping, and for an OBD file that has
    /// them its user–item affinities — all of them as a list indexed by `item_id + 1`
    /// (`affinities`), and the one of the item shown (`affinity`), a feature off-policy
    /// evaluation and reward models use.
    fn select_list(self, columns: &[String]) -> String {
        let mapping = self.mapping();
        if self != Source::Obd {
            return mapping.to_string();
        }
        let mut affinity: Vec<(usize, &String)> = columns
            .iter()
            .filter_map(|c| {
                c.strip_prefix("user-item_affinity_")?
                    .parse()
                    .ok()
                    .map(|k| (k, c))
            })
            .collect();
        affinity.sort();
        // Only a complete 0..n run names every item's place in the list.
        if affinity.is_empty() || affinity.iter().enumerate().any(|(i, (k, _))| i != *k) {
            return mapping.to_string();
        }
        let list = affinity
            .iter()
            .map(|(_, c)| format!("CAST(\"{c}\" AS DOUBLE)"))
            .collect::<Vec<_>>()
            .join(", ");
        format!(
            "{mapping}, make_array({list}) AS affinities, \
             array_element(make_array({list}), CAST(item_id AS BIGINT) + 1) AS affinity"
        )
    }
}

/// The table a file loads into when none is named: the file's name without its extension,
/// lower-cased, with `-`, `.` and spaces as `_` (`UserBehavior.csv` → `userbehavior`).
pub fn default_table_name(path: &Path) -> Option<String> {
    path.file_stem().map(|s| {
        s.to_string_lossy()
            .to_lowercase()
            .replace(['-', '.', ' '], "_")
    })
}

/// Where a load writes.
#[derive(Debug, Clone)]
pub struct Target {
    pub schema: String,
    pub table: String,
    /// Append to the existing table (its columns must be the ones the source maps to, in
    /// order) instead of creating it: a shop's next day of logs into the same table.
    pub append: bool,
}

/// Loads `path` as `source` into the table `target` (new, or existing when appending);
/// returns the rows loaded.
pub async fn load(session: &Session, source: Source, path: &Path, target: &Target) -> Result<u64> {
    let shown = path.display().to_string();
    if !path.exists() {
        return Err(EngineError::Io(std::io::Error::new(
            std::io::ErrorKind::NotFound,
            format!("{shown}: no such file or directory"),
        )));
    }
    let ctx = session.ctx();
    // One partition: rows keep the file's order, and parse errors count lines from its start.
    // The session's own setting is restored afterwards.
    let shared = ctx.state_ref();
    let split = {
        let mut state = shared.write();
        let opts = &mut state.config_mut().options_mut().optimizer;
        std::mem::replace(&mut opts.repartition_file_scans, false)
    };
    let result = load_file(session, source, path, target).await;
    shared
        .write()
        .config_mut()
        .options_mut()
        .optimizer
        .repartition_file_scans = split;
    result.map_err(|e| match malformed_at(&e) {
        Some((line, column, detail)) => EngineError::Malformed {
            file: shown.clone(),
            line,
            column: source
                .file_schema()
                .and_then(|s| s.fields().get(column - 1).map(|f| f.name().clone()))
                .map_or_else(|| column.to_string(), |name| format!("{column} ({name})")),
            detail,
        },
        None => EngineError::DataFusion(DataFusionError::Context(
            format!("loading {shown} as {source:?}"),
            Box::new(e),
        )),
    })
}

/// Appending needs the table's columns to be the load's, by name and in order (their types
/// are cast as in any INSERT): a different file would otherwise land in the wrong columns.
async fn same_columns(
    session: &Session,
    table: &TableReference,
    select: &str,
) -> datafusion::error::Result<()> {
    let ctx = session.ctx();
    let existing = ctx.table_provider(table.clone()).await?.schema();
    let loaded = ctx.state().create_logical_plan(select).await?;
    let names = |fields: Vec<String>| fields.join(", ");
    let have = names(existing.fields().iter().map(|f| f.name().clone()).collect());
    let load = names(
        loaded
            .schema()
            .fields()
            .iter()
            .map(|f| f.name().clone())
            .collect(),
    );
    if have != load {
        return Err(EngineError::LoadMismatch {
            table: table.to_string(),
            have,
            load,
        }
        .into());
    }
    Ok(())
}

/// The 1-based line and column, and the reason, of a CSV value that did not parse (Arrow
/// counts both from 0: "… for column 4 at line 5. Row data: …").
fn malformed_at(e: &DataFusionError) -> Option<(u64, usize, String)> {
    let DataFusionError::ArrowError(inner, _) = e.find_root() else {
        return None;
    };
    let datafusion::arrow::error::ArrowError::ParseError(msg) = inner.as_ref() else {
        return None;
    };
    let (head, rest) = msg.split_once(" for column ")?;
    let (column, rest) = rest.split_once(" at line ")?;
    let line: String = rest.chars().take_while(char::is_ascii_digit).collect();
    let detail = head
        .trim_start_matches("Error while parsing value ")
        .to_string();
    Some((
        line.parse::<u64>().ok()? + 1,
        column.trim().parse::<usize>().ok()? + 1,
        format!("invalid value {detail}"),
    ))
}

async fn load_file(
    session: &Session,
    source: Source,
    path: &Path,
    target: &Target,
) -> datafusion::error::Result<u64> {
    let ctx = session.ctx();
    let location = path.to_string_lossy().to_string();
    let df = match source {
        Source::Parquet => {
            ctx.read_parquet(location, ParquetReadOptions::default())
                .await?
        }
        _ => {
            let schema = source.file_schema();
            let mut options = CsvReadOptions::new()
                .has_header(source.has_header())
                .file_extension("");
            if let Some(s) = &schema {
                options = options.schema(s);
            }
            ctx.read_csv(location, options).await?
        }
    };
    let columns: Vec<String> = df
        .schema()
        .fields()
        .iter()
        .map(|f| f.name().clone())
        .collect();
    // A temporary name no user table has: registering replaces, deregistering removes.
    let src = TableReference::partial(TEMP_SCHEMA, "__flashsql_load_source");
    ctx.register_table(src.clone(), df.into_view())?;
    let table = TableReference::full(
        session.database(),
        target.schema.as_str(),
        target.table.as_str(),
    );
    let select = format!(
        "SELECT {} FROM {}",
        source.select_list(&columns),
        src.to_quoted_string()
    );
    let result = async {
        let sql = if target.append {
            same_columns(session, &table, &select).await?;
            format!("INSERT INTO {} {select}", table.to_quoted_string())
        } else {
            format!("CREATE TABLE {} AS {select}", table.to_quoted_string())
        };
        let plan = ctx.state().create_logical_plan(&sql).await?;
        if target.append {
            session.execute_plan(plan, false).await
        } else {
            Ok(session.create_table(plan, false, &source.sort_by()).await?)
        }
    }
    .await;
    let _ = ctx.deregister_table(src);
    match result? {
        Output::Command { rows, .. } => Ok(rows.unwrap_or(0)),
        _ => Ok(0),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parse_errors_name_line_and_column_from_one() {
        let e = DataFusionError::ArrowError(
            Box::new(datafusion::arrow::error::ArrowError::ParseError(
                "Error while parsing value 'x' as type 'Int64' for column 4 at line 5. Row data: '[1]'"
                    .into(),
            )),
            None,
        );
        let (line, column, detail) = malformed_at(&e).expect("recognised");
        assert_eq!((line, column), (6, 5));
        assert_eq!(detail, "invalid value 'x' as type 'Int64'");
    }

    #[test]
    fn sources_parse_by_name() {
        for name in Source::ALL {
            assert!(name.parse::<Source>().is_ok(), "{name}");
        }
        assert!("TAOBAO".parse::<Source>().is_ok());
        assert!("xlsx".parse::<Source>().is_err());
    }
}
