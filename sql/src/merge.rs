//! `MERGE` and `INSERT … ON CONFLICT` as queries for the target's new contents.
//!
//! DataFusion plans neither statement. Each becomes at most two queries, written here as
//! SQL over the statement's own target, source and expressions: the target's rows, each
//! kept, updated or deleted by the first `WHEN` clause that holds for it, and the source
//! rows the statement inserts. The engine writes both in place of the snapshot of the
//! target they read, in one commit, as it does for UPDATE and DELETE
//! (`flashsql_engine::merge`). Each query ends with the action column the engine counts
//! the statement's rows by. The target's rows come once per source row matched, with
//! their row numbers, for the engine to fold into one; the inserted rows pass the
//! engine's row check. Both drop deleted rows and repeated matches and fail (21000) where
//! PostgreSQL would change one row twice.
//!
//! `INSERT … ON CONFLICT (key) DO UPDATE | DO NOTHING` is the MERGE of its rows (as the
//! source `excluded`) on equal keys. flashsql has no unique indexes: the columns named in
//! the conflict target are the key, and rows proposed twice for one new key are inserted
//! once (DO NOTHING) or refused (DO UPDATE), as PostgreSQL does with a unique index.

use std::fmt::Write as _;

use datafusion::sql::sqlparser::ast::{
    AssignmentTarget, ConflictTarget, Expr, Ident, Insert, Merge, MergeAction, MergeClauseKind,
    MergeInsertKind, ObjectName, OnConflictAction, OnInsert, Statement, TableFactor, TableObject,
};
use datafusion::sql::sqlparser::dialect::PostgreSqlDialect;
use datafusion::sql::sqlparser::parser::Parser;
use flashsql_engine::merge::{ACTION, ROW_CHECK, ROW_ID, SOURCE_ROW, action, mode};

use crate::SqlError;

/// The queries of one MERGE: the target's rows (always) and the inserted rows (when the
/// statement has a `WHEN NOT MATCHED` clause).
#[derive(Debug, Clone, PartialEq)]
pub struct MergeQueries {
    pub target: ObjectName,
    pub kept: String,
    /// The statement's mode where `kept` yields each target row once per source row it
    /// matched, for the engine to fold (`flashsql_engine::merge::MergePlans::fold`).
    pub fold: Option<i64>,
    pub inserted: Option<String>,
}

/// How rows proposed twice for one key are treated (INSERT … ON CONFLICT only).
#[derive(Debug, Clone, Copy, PartialEq)]
enum Mode {
    Merge,
    DoNothing,
    DoUpdate,
}

impl Mode {
    fn code(self) -> i64 {
        match self {
            Mode::Merge => mode::MERGE,
            Mode::DoNothing => mode::ON_CONFLICT_DO_NOTHING,
            Mode::DoUpdate => mode::ON_CONFLICT_DO_UPDATE,
        }
    }
}

/// The table a MERGE writes.
pub fn target(merge: &Merge) -> Result<ObjectName, SqlError> {
    match &merge.table {
        TableFactor::Table { name, .. } => Ok(name.clone()),
        other => Err(SqlError::not_supported(format!(
            "MERGE into {other} is not supported: name a table"
        ))),
    }
}

/// The queries of `merge` into a table with `columns` (its column names, in order).
pub fn queries(merge: &Merge, columns: &[String]) -> Result<MergeQueries, SqlError> {
    build(merge, columns, Mode::Merge, &[])
}

/// The MERGE an `INSERT … ON CONFLICT` stands for, or `None` for one that is a plain
/// INSERT (`ON CONFLICT DO NOTHING` without a conflict target: with no unique index,
/// nothing can conflict).
pub fn on_conflict(insert: &Insert, columns: &[String]) -> Result<Option<MergeQueries>, SqlError> {
    let Some(OnInsert::OnConflict(conflict)) = &insert.on else {
        return Err(SqlError::not_supported(
            "INSERT … ON DUPLICATE KEY UPDATE is not supported: use ON CONFLICT",
        ));
    };
    let keys = match &conflict.conflict_target {
        None => match conflict.action {
            OnConflictAction::DoNothing => return Ok(None),
            OnConflictAction::DoUpdate(_) => {
                return Err(SqlError::syntax(
                    "ON CONFLICT DO UPDATE requires inference specification or constraint name",
                ));
            }
        },
        Some(ConflictTarget::Columns(keys)) => keys.clone(),
        Some(ConflictTarget::OnConstraint(name)) => {
            return Err(SqlError::with_hint(
                "0A000",
                format!("ON CONFLICT ON CONSTRAINT {name} is not supported"),
                "flashsql keeps no constraints: name the key columns, ON CONFLICT (col, …)",
            ));
        }
    };
    if insert.returning.is_some() {
        return Err(SqlError::not_supported(
            "INSERT … ON CONFLICT … RETURNING is not supported",
        ));
    }
    let TableObject::TableName(table) = &insert.table else {
        return Err(SqlError::not_supported(
            "INSERT INTO a table function is not supported",
        ));
    };
    let Some(source) = &insert.source else {
        return Err(SqlError::not_supported(
            "INSERT … SET with ON CONFLICT is not supported",
        ));
    };
    let insert_columns: Vec<Ident> = if insert.columns.is_empty() {
        columns.iter().map(|c| quoted(c)).collect()
    } else {
        insert.columns.iter().map(last_part).collect()
    };
    for k in &keys {
        if !insert_columns.iter().any(|c| same(c, k)) {
            return Err(SqlError::coded(
                "42P10",
                format!("the ON CONFLICT key column \"{}\" is not inserted", k.value),
            ));
        }
    }
    let alias = insert
        .table_alias
        .as_ref()
        .map(|a| a.alias.clone())
        .unwrap_or_else(|| last_part(table));
    let list = comma(&insert_columns);
    let on = keys
        .iter()
        .map(|k| format!("{alias}.{k} = excluded.{k}"))
        .collect::<Vec<_>>()
        .join(" AND ");
    let mut sql =
        format!("MERGE INTO {table} AS {alias} USING ({source}) AS excluded({list}) ON {on}");
    let mode = match &conflict.action {
        OnConflictAction::DoNothing => Mode::DoNothing,
        OnConflictAction::DoUpdate(update) => {
            let sets = update
                .assignments
                .iter()
                .map(|a| a.to_string())
                .collect::<Vec<_>>()
                .join(", ");
            let condition = update
                .selection
                .as_ref()
                .map(|w| format!(" AND ({w})"))
                .unwrap_or_default();
            let _ = write!(sql, " WHEN MATCHED{condition} THEN UPDATE SET {sets}");
            Mode::DoUpdate
        }
    };
    let values = insert_columns
        .iter()
        .map(|c| format!("excluded.{c}"))
        .collect::<Vec<_>>()
        .join(", ");
    let _ = write!(
        sql,
        " WHEN NOT MATCHED THEN INSERT ({list}) VALUES ({values})"
    );
    let parsed = Parser::parse_sql(&PostgreSqlDialect {}, &sql)
        .map_err(|e| SqlError::syntax(format!("INSERT … ON CONFLICT: {e}")))?;
    let merge = match parsed.into_iter().next() {
        Some(Statement::Merge(m)) => m,
        _ => return Err(SqlError::syntax("INSERT … ON CONFLICT could not be read")),
    };
    build(&merge, columns, mode, &keys).map(Some)
}

/// One `WHEN` clause, reduced to what the queries need.
struct Clause {
    condition: String,
    action: Action,
}

enum Action {
    /// `(column index, expression)` per assigned column.
    Update(Vec<(usize, String)>),
    Delete,
    /// One expression per target column (NULL where the clause names none).
    Insert(Vec<String>),
}

fn build(
    merge: &Merge,
    columns: &[String],
    mode: Mode,
    keys: &[Ident],
) -> Result<MergeQueries, SqlError> {
    if merge.output.is_some() {
        return Err(SqlError::not_supported(
            "MERGE … OUTPUT / RETURNING is not supported",
        ));
    }
    let target = target(merge)?;
    let target_alias = match &merge.table {
        TableFactor::Table { alias: Some(a), .. } => a.name.clone(),
        _ => last_part(&target),
    };
    let (source, source_alias) = source(&merge.source)?;
    let on = merge.on.to_string();
    let idents: Vec<Ident> = columns.iter().map(|c| quoted(c)).collect();

    let mut matched: Vec<Clause> = Vec::new();
    let mut unmatched_target = Vec::new();
    let mut inserts = Vec::new();
    for clause in &merge.clauses {
        let condition = clause
            .predicate
            .as_ref()
            .map(|p| format!("({p})"))
            .unwrap_or_else(|| "TRUE".into());
        let action = match &clause.action {
            MergeAction::Update(u) => {
                if u.update_predicate.is_some() || u.delete_predicate.is_some() {
                    return Err(SqlError::not_supported(
                        "UPDATE … WHERE / DELETE WHERE inside MERGE is not supported: use WHEN MATCHED AND …",
                    ));
                }
                let mut sets = Vec::new();
                for a in &u.assignments {
                    let AssignmentTarget::ColumnName(name) = &a.target else {
                        return Err(SqlError::not_supported(
                            "MERGE … UPDATE SET (a, b) = … is not supported: assign each column",
                        ));
                    };
                    let column = last_part(name);
                    let Some(i) = idents.iter().position(|c| same(c, &column)) else {
                        return Err(no_column(&column, &target));
                    };
                    if sets.iter().any(|(j, _)| *j == i) {
                        return Err(SqlError::coded(
                            "42601",
                            format!("multiple assignments to same column \"{}\"", column.value),
                        ));
                    }
                    sets.push((i, a.value.to_string()));
                }
                Action::Update(sets)
            }
            MergeAction::Delete { .. } => Action::Delete,
            MergeAction::Insert(insert) => {
                let named: Vec<Ident> = if insert.columns.is_empty() {
                    idents.clone()
                } else {
                    insert.columns.iter().map(last_part).collect()
                };
                let values: Vec<String> = match &insert.kind {
                    MergeInsertKind::Values(v) => match v.rows.as_slice() {
                        [row] => row.iter().map(Expr::to_string).collect(),
                        _ => {
                            return Err(SqlError::syntax("MERGE … INSERT takes one row of VALUES"));
                        }
                    },
                    MergeInsertKind::Row => {
                        return Err(SqlError::not_supported(
                            "MERGE … INSERT ROW is not supported",
                        ));
                    }
                };
                if values.len() != named.len() {
                    return Err(SqlError::syntax(if values.len() > named.len() {
                        "INSERT has more expressions than target columns"
                    } else {
                        "INSERT has more target columns than expressions"
                    }));
                }
                let mut row = vec!["NULL".to_string(); idents.len()];
                for (c, v) in named.iter().zip(values) {
                    let Some(i) = idents.iter().position(|t| same(t, c)) else {
                        return Err(no_column(c, &target));
                    };
                    row[i] = v;
                }
                Action::Insert(row)
            }
        };
        let insert = matches!(action, Action::Insert(_));
        let by_target = matches!(
            clause.clause_kind,
            MergeClauseKind::NotMatched | MergeClauseKind::NotMatchedByTarget
        );
        if insert != by_target {
            return Err(SqlError::syntax(if insert {
                "INSERT is not allowed in this MERGE clause: use WHEN NOT MATCHED"
            } else {
                "UPDATE and DELETE are not allowed in a WHEN NOT MATCHED clause"
            }));
        }
        let c = Clause { condition, action };
        let earlier = match clause.clause_kind {
            MergeClauseKind::Matched => &matched,
            MergeClauseKind::NotMatchedBySource => &unmatched_target,
            _ => &inserts,
        };
        if earlier.iter().any(|e| e.condition == "TRUE") {
            return Err(SqlError::syntax(
                "unreachable WHEN clause specified after unconditional WHEN clause",
            ));
        }
        match clause.clause_kind {
            MergeClauseKind::Matched => matched.push(c),
            MergeClauseKind::NotMatchedBySource => unmatched_target.push(c),
            _ => inserts.push(c),
        }
    }

    let t = &target_alias;
    let s = &source_alias;
    let check = |n: &str, k: &str| {
        format!(
            "{ROW_CHECK}(CAST({n} AS BIGINT), CAST({k} AS BIGINT), {ACTION}, {})",
            mode.code()
        )
    };
    let outputs = (0..idents.len())
        .map(|i| format!("__fsm_c{i}"))
        .collect::<Vec<_>>()
        .join(", ");

    // The target's rows, with what the first clause that holds does to each.
    let (kept, fold) = if matched.is_empty() && unmatched_target.is_empty() {
        let cols = idents
            .iter()
            .enumerate()
            .map(|(i, c)| format!("{t}.{c} AS __fsm_c{i}"))
            .collect::<Vec<_>>()
            .join(", ");
        let kept = format!(
            "SELECT {cols}, {} AS {ACTION} FROM {target} AS {t}",
            action::KEPT
        );
        (kept, None)
    } else {
        let hit = format!("{s}.__fsm_hit IS NOT NULL");
        let missed = format!("{s}.__fsm_hit IS NULL");
        let arms = |value: &dyn Fn(&Clause) -> String| {
            let mut arms = String::new();
            for (guard, clauses) in [(&hit, &matched), (&missed, &unmatched_target)] {
                for c in clauses {
                    let _ = write!(arms, " WHEN {guard} AND {} THEN {}", c.condition, value(c));
                }
            }
            arms
        };
        let act = arms(&|c| match c.action {
            Action::Delete => action::DELETED.to_string(),
            _ => action::UPDATED.to_string(),
        });
        let mut cols = Vec::new();
        for (i, column) in idents.iter().enumerate() {
            let assigned = [&matched, &unmatched_target].iter().any(|cs| {
                cs.iter()
                    .any(|c| matches!(&c.action, Action::Update(sets) if sets.iter().any(|(j, _)| *j == i)))
            });
            let old = format!("{t}.{column}");
            if assigned {
                let value = arms(&|c| match &c.action {
                    Action::Update(sets) => sets
                        .iter()
                        .find(|(j, _)| *j == i)
                        .map(|(_, v)| format!("({v})"))
                        .unwrap_or_else(|| old.clone()),
                    _ => old.clone(),
                });
                cols.push(format!("CASE{value} ELSE {old} END AS __fsm_c{i}"));
            } else {
                cols.push(format!("{old} AS __fsm_c{i}"));
            }
        }
        // A target row joined to several source rows comes out once per match: the engine
        // folds the copies into the one a clause acts on (or any), by the target row's
        // number, and fails where two copies act (MERGE) or, under ON CONFLICT DO UPDATE,
        // where a proposal follows the one that updated the row, as PostgreSQL takes
        // proposals in order. The source is written first, so that without statistics
        // saying otherwise the join holds it (usually the smaller side: a batch of changes)
        // and streams the target past it.
        let kept = format!(
            "SELECT {cols}, CASE{act} ELSE {kept} END AS {ACTION}, \
             {t}.{ROW_ID} AS {ROW_ID}, {s}.{SOURCE_ROW} AS {SOURCE_ROW} \
             FROM (SELECT *, TRUE AS __fsm_hit, row_number() OVER () AS {SOURCE_ROW} \
             FROM {source}) AS {s} \
             RIGHT JOIN (SELECT *, row_number() OVER () AS {ROW_ID} FROM {target} AS {t}) AS {t} \
             ON ({on})",
            cols = cols.join(", "),
            kept = action::KEPT,
        );
        (kept, Some(mode.code()))
    };

    // The source rows no target row matches, inserted by the first clause that holds.
    let inserted = if inserts.is_empty() {
        None
    } else {
        let mut cols = Vec::new();
        for i in 0..idents.len() {
            let mut arms = String::new();
            for c in &inserts {
                if let Action::Insert(row) = &c.action {
                    let _ = write!(arms, " WHEN {} THEN ({})", c.condition, row[i]);
                }
            }
            cols.push(format!("CASE{arms} END AS __fsm_c{i}"));
        }
        let filter = if inserts.iter().any(|c| c.condition == "TRUE") {
            "TRUE".to_string()
        } else {
            let any = inserts
                .iter()
                .map(|c| c.condition.as_str())
                .collect::<Vec<_>>()
                .join(" OR ");
            format!("COALESCE({any}, FALSE)")
        };
        let (n, k) = if keys.is_empty() {
            ("1".to_string(), "1".to_string())
        } else {
            let by = keys
                .iter()
                .map(|k| format!("{s}.{k}"))
                .collect::<Vec<_>>()
                .join(", ");
            let null = keys
                .iter()
                .map(|k| format!("{s}.{k} IS NULL"))
                .collect::<Vec<_>>()
                .join(" OR ");
            (
                format!("CASE WHEN {null} THEN 1 ELSE count(*) OVER (PARTITION BY {by}) END"),
                format!(
                    "CASE WHEN {null} THEN 1 ELSE row_number() OVER (PARTITION BY {by} \
                     ORDER BY {s}.{SOURCE_ROW}) END"
                ),
            )
        };
        Some(format!(
            "SELECT {outputs}, {ACTION} FROM (SELECT {cols}, {inserted} AS {ACTION}, \
             {n} AS __fsm_n, {k} AS __fsm_k \
             FROM (SELECT {s}.* FROM (SELECT *, row_number() OVER () AS {SOURCE_ROW} FROM {source}) AS {s} \
             LEFT JOIN (SELECT *, TRUE AS __fsm_thit FROM {target} AS {t}) AS {t} ON ({on}) \
             WHERE {t}.__fsm_thit IS NULL) AS {s} WHERE {filter}) AS __fsm WHERE {}",
            check("__fsm_n", "__fsm_k"),
            cols = cols.join(", "),
            inserted = action::INSERTED,
        ))
    };
    Ok(MergeQueries {
        target,
        kept,
        fold,
        inserted,
    })
}

/// The source as a FROM item under its alias, and the alias.
fn source(factor: &TableFactor) -> Result<(String, Ident), SqlError> {
    match factor {
        TableFactor::Table { alias: Some(a), .. } | TableFactor::Derived { alias: Some(a), .. } => {
            Ok((factor.to_string(), a.name.clone()))
        }
        TableFactor::Table {
            name, alias: None, ..
        } => Ok((factor.to_string(), last_part(name))),
        TableFactor::Derived { alias: None, .. } => Ok((
            format!("{factor} AS __fsm_source"),
            Ident::new("__fsm_source"),
        )),
        other => Err(SqlError::not_supported(format!(
            "MERGE … USING {other} is not supported: use a table or a subquery"
        ))),
    }
}

fn no_column(column: &Ident, table: &ObjectName) -> SqlError {
    SqlError::coded(
        "42703",
        format!(
            "column \"{}\" of relation \"{}\" does not exist",
            column.value,
            last_part(table).value
        ),
    )
}

fn quoted(name: &str) -> Ident {
    Ident::with_quote('"', name)
}

fn last_part(name: &ObjectName) -> Ident {
    name.0
        .last()
        .and_then(|p| p.as_ident())
        .cloned()
        .unwrap_or_else(|| Ident::new(name.to_string()))
}

/// Whether two identifiers name the same column (an unquoted one folds to lower case).
fn same(a: &Ident, b: &Ident) -> bool {
    folded(a) == folded(b)
}

fn folded(i: &Ident) -> String {
    match i.quote_style {
        Some(_) => i.value.clone(),
        None => i.value.to_lowercase(),
    }
}

fn comma(idents: &[Ident]) -> String {
    idents
        .iter()
        .map(Ident::to_string)
        .collect::<Vec<_>>()
        .join(", ")
}
