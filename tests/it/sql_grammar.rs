//! Random SQL from a grammar over the world's tables, scratch tables and every flashsql
//! function, for the SQL fuzzer. Statements are mostly well-typed (so they reach planning and
//! execution, not only the parser), with hostile values — extreme integers, NaN and
//! infinities, long and non-ASCII strings, deep nesting, absurd options — and a share are
//! mutated token by token to exercise the parser's error paths. Every choice comes from one
//! seeded generator: the same seed gives the same statements.

use rand::seq::IndexedRandom;
use rand::{Rng, SeedableRng};
use rand_chacha::ChaCha8Rng;

/// The value types the grammar builds expressions of.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Ty {
    Int,
    Float,
    Text,
    Bool,
    Ts,
    IntList,
    FloatList,
}

const TYPES: [Ty; 7] = [
    Ty::Int,
    Ty::Float,
    Ty::Text,
    Ty::Bool,
    Ty::Ts,
    Ty::IntList,
    Ty::FloatList,
];

struct Table {
    name: &'static str,
    columns: &'static [(&'static str, Ty)],
}

const WORLD: &[Table] = &[
    Table {
        name: "events",
        columns: &[
            ("user_id", Ty::Int),
            ("item_id", Ty::Int),
            ("category_id", Ty::Int),
            ("event_type", Ty::Text),
            ("ts", Ty::Ts),
            ("price", Ty::Float),
            ("discount", Ty::Float),
            ("campaign_id", Ty::Int),
        ],
    },
    Table {
        name: "items",
        columns: &[
            ("item_id", Ty::Int),
            ("category_id", Ty::Int),
            ("base_price", Ty::Float),
            ("unit_cost", Ty::Float),
            ("inventory", Ty::Int),
        ],
    },
    Table {
        name: "users",
        columns: &[
            ("user_id", Ty::Int),
            ("signup_ts", Ty::Ts),
            ("segment", Ty::Text),
        ],
    },
    Table {
        name: "exposures",
        columns: &[
            ("exposure_id", Ty::Int),
            ("user_id", Ty::Int),
            ("item_id", Ty::Int),
            ("campaign_id", Ty::Int),
            ("discount", Ty::Float),
            ("shown_ts", Ty::Ts),
            ("time_left", Ty::Float),
            ("propensity", Ty::Float),
            ("purchased", Ty::Bool),
        ],
    },
    Table {
        name: "campaigns",
        columns: &[
            ("campaign_id", Ty::Int),
            ("item_id", Ty::Int),
            ("start_ts", Ty::Ts),
            ("end_ts", Ty::Ts),
            ("discount", Ty::Float),
            ("budget", Ty::Float),
            ("allotment", Ty::Int),
            ("units_sold", Ty::Int),
        ],
    },
];

/// Columns of the scratch tables `fz_0` … `fz_2` that writes go to.
const SCRATCH: &[(&str, Ty)] = &[
    ("k", Ty::Int),
    ("v", Ty::Float),
    ("s", Ty::Text),
    ("b", Ty::Bool),
    ("t", Ty::Ts),
];

/// The statements that create the scratch tables before fuzzing.
pub fn setup() -> Vec<String> {
    (0..3)
        .map(|i| {
            format!(
                "CREATE TABLE IF NOT EXISTS fz_{i} (k BIGINT, v DOUBLE PRECISION, s TEXT, \
                 b BOOLEAN, t TIMESTAMP)"
            )
        })
        .collect()
}

/// A column visible to an expression: its qualifier, name and type.
#[derive(Clone)]
struct Col {
    qual: String,
    name: &'static str,
    ty: Ty,
}

pub struct SqlGen {
    rng: ChaCha8Rng,
}

impl SqlGen {
    pub fn new(seed: u64) -> SqlGen {
        SqlGen {
            rng: ChaCha8Rng::seed_from_u64(seed),
        }
    }

    fn p(&mut self, p: f64) -> bool {
        self.rng.random_bool(p)
    }

    fn pick<T: Copy>(&mut self, xs: &[T]) -> T {
        *xs.choose(&mut self.rng).expect("non-empty")
    }

    fn table(&mut self) -> &'static Table {
        WORLD.choose(&mut self.rng).expect("tables")
    }

    fn n(&mut self, lo: usize, hi: usize) -> usize {
        self.rng.random_range(lo..=hi)
    }

    /// The next statement (possibly several separated by `;`).
    pub fn statement(&mut self) -> String {
        let sql = match self.n(0, 99) {
            0..=29 => self.select(0),
            30..=37 => self.insert(),
            38..=41 => self.update(),
            42..=44 => self.delete(),
            45..=47 => self.ddl(),
            48..=55 => self.relation_function(),
            56..=59 => self.transaction(),
            60..=63 => self.session_statement(),
            64..=67 => self.cursor_or_prepared(),
            68..=71 => format!(
                "EXPLAIN {}{}",
                if self.p(0.3) { "ANALYZE " } else { "" },
                self.select(0)
            ),
            72..=77 => self.deep(),
            78..=81 => self.hostile_path(),
            82..=85 => self.catalog_query(),
            _ => {
                let ty = self.pick(&TYPES);
                format!("SELECT {}", self.expr(ty, 4, &[]))
            }
        };
        if self.p(0.12) { self.mutate(&sql) } else { sql }
    }

    // ---- values ---------------------------------------------------------------------

    fn literal(&mut self, ty: Ty) -> String {
        if self.p(0.06) {
            return format!("CAST(NULL AS {})", type_name(ty));
        }
        match ty {
            Ty::Int => {
                let edge = [
                    "0",
                    "1",
                    "-1",
                    "2147483647",
                    "-2147483648",
                    "9223372036854775807",
                    "(-9223372036854775807 - 1)",
                    "4294967296",
                    "99999999999999999999",
                ];
                if self.p(0.3) {
                    self.pick(&edge).to_string()
                } else {
                    self.rng.random_range(-1000i64..100_000).to_string()
                }
            }
            Ty::Float => {
                let edge = [
                    "0.0",
                    "-0.0",
                    "1e308",
                    "-1e308",
                    "1e-308",
                    "CAST('NaN' AS DOUBLE PRECISION)",
                    "CAST('Infinity' AS DOUBLE PRECISION)",
                    "CAST('-Infinity' AS DOUBLE PRECISION)",
                    "0.5",
                    "1.0",
                ];
                if self.p(0.35) {
                    self.pick(&edge).to_string()
                } else {
                    format!("{:.4}", self.rng.random_range(-10.0f64..1000.0))
                }
            }
            Ty::Text => {
                let edge = [
                    "''",
                    "'view'",
                    "'purchase'",
                    "'cart'",
                    "'限时抢购'",
                    "'it''s'",
                    "'\\'",
                    "'%_%'",
                    "'NaN'",
                    "'2026-10-29'",
                    "E'\\x00'",
                    "'🙂'",
                    "U&'\\0041'",
                ];
                if self.p(0.08) {
                    let len = self.pick(&[1_000usize, 65_536, 300_000]);
                    format!("'{}'", "x".repeat(len))
                } else {
                    self.pick(&edge).to_string()
                }
            }
            Ty::Bool => self.pick(&["TRUE", "FALSE"]).to_string(),
            Ty::Ts => {
                let edge = [
                    "TIMESTAMP '2026-10-29 00:00:00'",
                    "TIMESTAMP '1970-01-01 00:00:00'",
                    "TIMESTAMP '2262-04-11 23:47:16'",
                    "TIMESTAMP '1677-09-21 00:12:44'",
                    "TIMESTAMP '9999-12-31 23:59:59'",
                    "TIMESTAMP '0001-01-01 00:00:00'",
                    "CAST('2026-02-30' AS TIMESTAMP)",
                    "now()",
                ];
                self.pick(&edge).to_string()
            }
            Ty::IntList => {
                let n = self.n(0, 6);
                let items: Vec<String> = (0..n).map(|_| self.literal(Ty::Int)).collect();
                if items.is_empty() {
                    "CAST(ARRAY[] AS BIGINT[])".into()
                } else {
                    format!("ARRAY[{}]", items.join(", "))
                }
            }
            Ty::FloatList => {
                let n = self.n(1, 6);
                let items: Vec<String> = (0..n).map(|_| self.literal(Ty::Float)).collect();
                format!("ARRAY[{}]", items.join(", "))
            }
        }
    }

    // ---- expressions ----------------------------------------------------------------

    fn column(&mut self, ty: Ty, scope: &[Col]) -> Option<String> {
        let fits: Vec<&Col> = scope.iter().filter(|c| c.ty == ty).collect();
        let c = fits.choose(&mut self.rng)?;
        Some(if c.qual.is_empty() {
            c.name.to_string()
        } else {
            format!("{}.{}", c.qual, c.name)
        })
    }

    fn expr(&mut self, ty: Ty, depth: usize, scope: &[Col]) -> String {
        if depth == 0 || self.p(0.3) {
            if self.p(0.7)
                && let Some(c) = self.column(ty, scope)
            {
                return c;
            }
            return self.literal(ty);
        }
        let d = depth - 1;
        match ty {
            Ty::Int => match self.n(0, 13) {
                0 => format!(
                    "({} + {})",
                    self.expr(ty, d, scope),
                    self.expr(ty, d, scope)
                ),
                1 => format!(
                    "({} - {})",
                    self.expr(ty, d, scope),
                    self.expr(ty, d, scope)
                ),
                2 => format!(
                    "({} * {})",
                    self.expr(ty, d, scope),
                    self.expr(ty, d, scope)
                ),
                3 => format!(
                    "({} / {})",
                    self.expr(ty, d, scope),
                    self.expr(ty, d, scope)
                ),
                4 => format!(
                    "({} % {})",
                    self.expr(ty, d, scope),
                    self.expr(ty, d, scope)
                ),
                5 => format!("abs({})", self.expr(ty, d, scope)),
                6 => format!("length({})", self.expr(Ty::Text, d, scope)),
                7 => format!("cardinality({})", self.expr(Ty::IntList, d, scope)),
                8 => format!("CAST({} AS BIGINT)", self.expr(Ty::Float, d, scope)),
                9 => format!("CAST({} AS INT)", self.expr(Ty::Text, d, scope)),
                10 => self.case(ty, d, scope),
                11 => format!(
                    "CAST(date_part('{}', {}) AS BIGINT)",
                    self.pick(&["hour", "dow", "epoch", "year", "doy"]),
                    self.expr(Ty::Ts, d, scope)
                ),
                12 => format!("({})", self.scalar_subquery(ty)),
                _ => format!(
                    "coalesce({}, {})",
                    self.expr(ty, d, scope),
                    self.expr(ty, d, scope)
                ),
            },
            Ty::Float => match self.n(0, 13) {
                0 => format!(
                    "({} + {})",
                    self.expr(ty, d, scope),
                    self.expr(ty, d, scope)
                ),
                1 => format!(
                    "({} * {})",
                    self.expr(ty, d, scope),
                    self.expr(ty, d, scope)
                ),
                2 => format!(
                    "({} / {})",
                    self.expr(ty, d, scope),
                    self.expr(ty, d, scope)
                ),
                3 => format!(
                    "power({}, {})",
                    self.expr(ty, d, scope),
                    self.expr(ty, d, scope)
                ),
                4 => format!(
                    "{}({})",
                    self.pick(&["ln", "sqrt", "exp", "log10", "abs", "ceil", "floor"]),
                    self.expr(ty, d, scope)
                ),
                5 => format!(
                    "round({}, {})",
                    self.expr(ty, d, scope),
                    self.expr(Ty::Int, d, scope)
                ),
                6 => format!("CAST({} AS DOUBLE PRECISION)", self.expr(Ty::Int, d, scope)),
                7 => format!(
                    "cosine_similarity({}, {})",
                    self.expr(Ty::FloatList, d, scope),
                    self.expr(Ty::FloatList, d, scope)
                ),
                8 => format!(
                    "purchase_prob({}, {}, {}, {}, {})",
                    self.model_name(),
                    self.expr(Ty::IntList, d, scope),
                    self.expr(Ty::Int, d, scope),
                    self.expr(Ty::Float, d, scope),
                    self.expr(Ty::Float, d, scope)
                ),
                9 => format!(
                    "propensity({}, {})",
                    self.model_name(),
                    self.expr(Ty::IntList, d, scope)
                ),
                10 => self.case(ty, d, scope),
                11 => format!(
                    "CAST({} AS DOUBLE PRECISION)",
                    self.expr(Ty::Text, d, scope)
                ),
                12 => format!("({})", self.scalar_subquery(ty)),
                _ => format!("-{}", self.expr(ty, d, scope)),
            },
            Ty::Text => match self.n(0, 12) {
                0 => format!(
                    "({} || {})",
                    self.expr(ty, d, scope),
                    self.expr(ty, d, scope)
                ),
                1 => format!(
                    "{}({})",
                    self.pick(&["upper", "lower", "md5", "trim", "reverse", "initcap"]),
                    self.expr(ty, d, scope)
                ),
                2 => format!(
                    "substr({}, {}, {})",
                    self.expr(ty, d, scope),
                    self.expr(Ty::Int, d, scope),
                    self.expr(Ty::Int, d, scope)
                ),
                3 => format!(
                    "{}({}, {})",
                    self.pick(&["lpad", "rpad", "repeat", "left", "right"]),
                    self.expr(ty, d, scope),
                    self.expr(Ty::Int, d, scope)
                ),
                4 => format!(
                    "replace({}, {}, {})",
                    self.expr(ty, d, scope),
                    self.expr(ty, d, scope),
                    self.expr(ty, d, scope)
                ),
                5 => format!(
                    "split_part({}, {}, {})",
                    self.expr(ty, d, scope),
                    self.expr(ty, d, scope),
                    self.expr(Ty::Int, d, scope)
                ),
                6 => format!("CAST({} AS TEXT)", {
                    let t = self.pick(&TYPES);
                    self.expr(t, d, scope)
                }),
                7 => format!(
                    "regexp_replace({}, {}, {})",
                    self.expr(ty, d, scope),
                    self.pick(&["'a+'", "'(x*)*y'", "'['", "'.*'", "'\\d{1,1000}'"]),
                    self.expr(ty, d, scope)
                ),
                8 => self.case(ty, d, scope),
                9 => format!(
                    "to_char({}, {})",
                    self.expr(Ty::Ts, d, scope),
                    self.pick(&["'%Y-%m-%d'", "'%Q'", "'%'", "''"])
                ),
                10 => format!(
                    "concat_ws({}, {}, {})",
                    self.expr(ty, d, scope),
                    self.expr(ty, d, scope),
                    self.expr(Ty::Int, d, scope)
                ),
                11 => format!(
                    "array_to_string({}, {})",
                    self.expr(Ty::IntList, d, scope),
                    self.expr(ty, d, scope)
                ),
                _ => format!("({})", self.scalar_subquery(ty)),
            },
            Ty::Bool => match self.n(0, 10) {
                0 => {
                    let t = self.pick(&[Ty::Int, Ty::Float, Ty::Text, Ty::Ts]);
                    format!(
                        "({} {} {})",
                        self.expr(t, d, scope),
                        self.pick(&["=", "<>", "<", ">=", "IS DISTINCT FROM"]),
                        self.expr(t, d, scope)
                    )
                }
                1 => format!(
                    "({} {} {})",
                    self.expr(ty, d, scope),
                    self.pick(&["AND", "OR"]),
                    self.expr(ty, d, scope)
                ),
                2 => format!("(NOT {})", self.expr(ty, d, scope)),
                3 => {
                    let t = self.pick(&TYPES);
                    format!("({} IS NULL)", self.expr(t, d, scope))
                }
                4 => format!(
                    "({} BETWEEN {} AND {})",
                    self.expr(Ty::Int, d, scope),
                    self.expr(Ty::Int, d, scope),
                    self.expr(Ty::Int, d, scope)
                ),
                5 => format!(
                    "({} IN ({}, {}))",
                    self.expr(Ty::Int, d, scope),
                    self.expr(Ty::Int, d, scope),
                    self.expr(Ty::Int, d, scope)
                ),
                6 => format!(
                    "({} {} {})",
                    self.expr(Ty::Text, d, scope),
                    self.pick(&["LIKE", "ILIKE", "~", "!~"]),
                    self.pick(&["'%a%'", "'_'", "'['", "'(a|b)*c'", "''"])
                ),
                7 => format!("EXISTS ({})", self.select(2)),
                8 => {
                    let t = self.table();
                    let (c, cty) = t.columns[0];
                    let probe = self.expr(cty, d, scope);
                    format!("({probe} IN (SELECT {c} FROM {}))", t.name)
                }
                9 => format!(
                    "array_has({}, {})",
                    self.expr(Ty::IntList, d, scope),
                    self.expr(Ty::Int, d, scope)
                ),
                _ => self.case(ty, d, scope),
            },
            Ty::Ts => match self.n(0, 5) {
                0 => format!(
                    "({} + INTERVAL '{} {}')",
                    self.expr(ty, d, scope),
                    self.pick(&["1", "-1", "1000000", "2147483647"]),
                    self.pick(&["days", "hours", "seconds", "years", "months"])
                ),
                1 => format!(
                    "date_trunc('{}', {})",
                    self.pick(&["day", "hour", "week", "month", "century"]),
                    self.expr(ty, d, scope)
                ),
                2 => format!("to_timestamp({})", self.expr(Ty::Int, d, scope)),
                3 => format!("CAST({} AS TIMESTAMP)", self.expr(Ty::Text, d, scope)),
                4 => format!("({})", self.scalar_subquery(ty)),
                _ => self.case(ty, d, scope),
            },
            Ty::IntList => match self.n(0, 6) {
                0 => format!(
                    "array_repeat({}, {})",
                    self.expr(Ty::Int, d, scope),
                    self.expr(Ty::Int, d, scope)
                ),
                1 => format!(
                    "range({}, {})",
                    self.expr(Ty::Int, d, scope),
                    self.expr(Ty::Int, d, scope)
                ),
                2 => format!(
                    "array_append({}, {})",
                    self.expr(ty, d, scope),
                    self.expr(Ty::Int, d, scope)
                ),
                3 => format!(
                    "array_concat({}, {})",
                    self.expr(ty, d, scope),
                    self.expr(ty, d, scope)
                ),
                4 => format!(
                    "array_resize({}, {})",
                    self.expr(ty, d, scope),
                    self.expr(Ty::Int, d, scope)
                ),
                5 => format!(
                    "({})",
                    "SELECT behavior_sequence(event_type, category_id, ts) FROM events WHERE user_id = 3"
                ),
                _ => format!(
                    "make_array({}, {})",
                    self.expr(Ty::Int, d, scope),
                    self.expr(Ty::Int, d, scope)
                ),
            },
            Ty::FloatList => match self.n(0, 3) {
                0 => format!(
                    "fuse({}, {}, {}, {})",
                    self.expr(ty, d, scope),
                    self.expr(Ty::Float, d, scope),
                    self.expr(ty, d, scope),
                    self.expr(Ty::Float, d, scope)
                ),
                1 => format!(
                    "user_embedding({}{})",
                    self.expr(Ty::IntList, d, scope),
                    if self.p(0.5) {
                        format!(", {}", self.model_name())
                    } else {
                        String::new()
                    }
                ),
                2 => format!(
                    "array_repeat({}, {})",
                    self.expr(Ty::Float, d, scope),
                    self.expr(Ty::Int, d, scope)
                ),
                _ => self.literal(ty),
            },
        }
    }

    fn case(&mut self, ty: Ty, d: usize, scope: &[Col]) -> String {
        format!(
            "CASE WHEN {} THEN {} ELSE {} END",
            self.expr(Ty::Bool, d, scope),
            self.expr(ty, d, scope),
            self.expr(ty, d, scope)
        )
    }

    fn scalar_subquery(&mut self, ty: Ty) -> String {
        let t = self.table();
        let scope = scope_of(t, "s");
        let inner = self.expr(ty, 1, &scope);
        let agg = match ty {
            Ty::Int | Ty::Float | Ty::Text | Ty::Ts => self.pick(&["max", "min"]),
            _ => "",
        };
        if agg.is_empty() {
            format!("SELECT {inner} FROM {} s LIMIT 1", t.name)
        } else {
            format!("SELECT {agg}({inner}) FROM {} s", t.name)
        }
    }

    fn model_name(&mut self) -> String {
        self.pick(&["'fz_model'", "'missing'", "''", "NULL", "'fz_model\u{1}x'"])
            .to_string()
    }

    // ---- queries --------------------------------------------------------------------

    fn select(&mut self, nesting: usize) -> String {
        let (from, scope) = self.source(nesting);
        let mut sql = String::from("SELECT ");
        let aggregate = self.p(0.35);
        let mut group = Vec::new();
        if aggregate {
            let keys = self.n(0, 2);
            for _ in 0..keys {
                let ty = self.pick(&[Ty::Int, Ty::Text, Ty::Bool, Ty::Ts]);
                group.push(self.expr(ty, 1, &scope));
            }
            let mut items = group.clone();
            for _ in 0..self.n(1, 3) {
                items.push(self.aggregate(&scope));
            }
            sql.push_str(&items.join(", "));
        } else {
            let n = self.n(1, 4);
            let mut items = Vec::new();
            for _ in 0..n {
                if self.p(0.15) {
                    items.push(self.window(&scope));
                } else {
                    let ty = self.pick(&TYPES);
                    items.push(self.expr(ty, 3, &scope));
                }
            }
            if self.p(0.1) {
                items = vec!["*".into()];
            }
            sql.push_str(&items.join(", "));
        }
        sql.push_str(&format!(" FROM {from}"));
        if self.p(0.6) {
            sql.push_str(&format!(" WHERE {}", self.expr(Ty::Bool, 3, &scope)));
        }
        if !group.is_empty() {
            let positions: Vec<String> = (1..=group.len()).map(|i| i.to_string()).collect();
            sql.push_str(&format!(" GROUP BY {}", positions.join(", ")));
            if self.p(0.2) {
                sql.push_str(" HAVING count(*) > 1");
            }
        }
        if self.p(0.3) {
            sql.push_str(&format!(
                " ORDER BY 1{}",
                self.pick(&["", " DESC", " NULLS FIRST"])
            ));
        }
        if self.p(0.6) {
            let limit = self.pick(&["0", "1", "10", "100", "-1", "9223372036854775807", "NULL"]);
            sql.push_str(&format!(" LIMIT {limit}"));
            if self.p(0.2) {
                sql.push_str(&format!(
                    " OFFSET {}",
                    self.pick(&["1", "-5", "1000000000000"])
                ));
            }
        }
        if nesting == 0 && self.p(0.1) {
            sql = format!("WITH q AS ({sql}) SELECT * FROM q");
        }
        if nesting == 0 && self.p(0.08) {
            let other = self.select(1);
            sql = format!(
                "({sql}) {} ({other})",
                self.pick(&["UNION ALL", "UNION", "EXCEPT", "INTERSECT"])
            );
        }
        sql
    }

    fn source(&mut self, nesting: usize) -> (String, Vec<Col>) {
        match self.n(0, 9) {
            0..=4 => {
                let t = self.table();
                (format!("{} a", t.name), scope_of(t, "a"))
            }
            5 | 6 => {
                let (l, r) = (self.table(), self.table());
                let shared: Vec<&str> = l
                    .columns
                    .iter()
                    .filter(|(c, _)| r.columns.iter().any(|(d, _)| d == c))
                    .map(|(c, _)| *c)
                    .collect();
                let on = match shared.choose(&mut self.rng) {
                    Some(c) => format!("a.{c} = b.{c}"),
                    None => "TRUE".into(),
                };
                let kind = self.pick(&["JOIN", "LEFT JOIN", "FULL JOIN"]);
                let mut scope = scope_of(l, "a");
                scope.extend(scope_of(r, "b"));
                (format!("{} a {kind} {} b ON {on}", l.name, r.name), scope)
            }
            7 if nesting < 2 => {
                let inner = self.select(nesting + 1);
                (format!("({inner}) a"), Vec::new())
            }
            8 => {
                let name = self.pick(&["fz_0", "fz_1", "fz_2"]);
                let scope = SCRATCH
                    .iter()
                    .map(|(c, ty)| Col {
                        qual: "a".into(),
                        name: c,
                        ty: *ty,
                    })
                    .collect();
                (format!("{name} a"), scope)
            }
            _ => {
                let stop = self.pick(&["10", "1000", "100000", "2147483647", "-5"]);
                (
                    format!("generate_series(1, {stop}) AS a(k)"),
                    vec![Col {
                        qual: "a".into(),
                        name: "k",
                        ty: Ty::Int,
                    }],
                )
            }
        }
    }

    fn aggregate(&mut self, scope: &[Col]) -> String {
        match self.n(0, 13) {
            0 => "count(*)".into(),
            1 => format!(
                "{}({})",
                self.pick(&["sum", "avg", "min", "max", "stddev", "var_pop", "median"]),
                self.expr(Ty::Float, 2, scope)
            ),
            2 => format!(
                "{}({})",
                self.pick(&["sum", "count", "min", "max", "bit_xor"]),
                self.expr(Ty::Int, 2, scope)
            ),
            3 => format!(
                "{}({}, {})",
                self.pick(&["auc", "log_loss", "brier", "ece"]),
                self.expr(Ty::Bool, 1, scope),
                self.expr(Ty::Float, 2, scope)
            ),
            4 => format!(
                "ece({}, {}, {})",
                self.expr(Ty::Bool, 1, scope),
                self.expr(Ty::Float, 1, scope),
                self.expr(Ty::Int, 1, scope)
            ),
            5 => {
                let extra = if self.p(0.5) {
                    format!(
                        ", {}, {}",
                        self.expr(Ty::Int, 1, scope),
                        self.expr(Ty::Ts, 1, scope)
                    )
                } else {
                    String::new()
                };
                format!(
                    "behavior_sequence({}, {}, {}{extra})",
                    self.expr(Ty::Text, 1, scope),
                    self.expr(Ty::Int, 1, scope),
                    self.expr(Ty::Ts, 1, scope)
                )
            }
            6 => format!(
                "string_agg({}, {})",
                self.expr(Ty::Text, 1, scope),
                self.expr(Ty::Text, 0, scope)
            ),
            7 => format!("array_agg({})", self.expr(Ty::Int, 1, scope)),
            8 => format!(
                "approx_percentile_cont({}, {})",
                self.expr(Ty::Float, 1, scope),
                self.pick(&["0.5", "0.0", "1.0", "-1", "2", "NULL"])
            ),
            9 => format!("count(DISTINCT {})", self.expr(Ty::Text, 1, scope)),
            10 => format!("count(*) FILTER (WHERE {})", self.expr(Ty::Bool, 1, scope)),
            11 => {
                let f = self.pick(&[
                    "ab_test",
                    "ttest",
                    "sequential_test",
                    "bayes_ab",
                    "srm_test",
                ]);
                let option = match self.n(0, 4) {
                    0 => String::new(),
                    1 => format!(", {}", self.expr(Ty::Text, 1, scope)),
                    2 => format!(
                        ", alpha => {}",
                        self.pick(&["0.05", "0", "1", "-1", "'NaN'::float8", "1e-300"])
                    ),
                    3 => format!(", tuning => {}", self.pick(&["5000", "0", "1e308", "-1"])),
                    _ => format!(
                        ", {}, {}",
                        self.pick(&["NULL", "'a'", "ARRAY['a', 'b']"]),
                        self.pick(&["0.5", "ARRAY[0.5, 0.5]", "ARRAY[-1.0, 2.0]"])
                    ),
                };
                let value = if f == "srm_test" {
                    String::new()
                } else {
                    format!(", {}", self.expr(Ty::Float, 1, scope))
                };
                format!("{f}({}{value}{option})", self.expr(Ty::Text, 1, scope))
            }
            12 => format!(
                "{}({}, {}, {})",
                self.pick(&["cuped_ttest", "cuped"]),
                self.expr(Ty::Text, 1, scope),
                self.expr(Ty::Float, 1, scope),
                self.expr(Ty::Float, 1, scope)
            ),
            _ => format!(
                "corr({}, {})",
                self.expr(Ty::Float, 1, scope),
                self.expr(Ty::Float, 1, scope)
            ),
        }
    }

    fn window(&mut self, scope: &[Col]) -> String {
        let f = match self.n(0, 4) {
            0 => "row_number()".to_string(),
            1 => format!("sum({})", self.expr(Ty::Float, 1, scope)),
            2 => format!(
                "lag({}, {})",
                self.expr(Ty::Int, 1, scope),
                self.pick(&["1", "0", "-1", "1000000"])
            ),
            3 => "rank()".to_string(),
            _ => format!("ntile({})", self.pick(&["4", "0", "-1", "NULL"])),
        };
        let part = self.expr(Ty::Int, 1, scope);
        let order = self.expr(Ty::Ts, 1, scope);
        let frame = self.pick(&[
            "",
            " ROWS BETWEEN 2 PRECEDING AND CURRENT ROW",
            " ROWS BETWEEN UNBOUNDED PRECEDING AND UNBOUNDED FOLLOWING",
            " RANGE BETWEEN INTERVAL '1 day' PRECEDING AND CURRENT ROW",
        ]);
        format!("{f} OVER (PARTITION BY {part} ORDER BY {order}{frame})")
    }

    // ---- writes ---------------------------------------------------------------------

    fn scratch(&mut self) -> &'static str {
        self.pick(&["fz_0", "fz_1", "fz_2", "fz_missing", "events"])
    }

    fn scratch_scope() -> Vec<Col> {
        SCRATCH
            .iter()
            .map(|(c, ty)| Col {
                qual: String::new(),
                name: c,
                ty: *ty,
            })
            .collect()
    }

    fn scratch_row(&mut self) -> String {
        let values: Vec<String> = SCRATCH
            .iter()
            .map(|(_, ty)| self.expr(*ty, 1, &[]))
            .collect();
        format!("({})", values.join(", "))
    }

    fn insert(&mut self) -> String {
        let table = self.scratch();
        match self.n(0, 3) {
            0 | 1 => {
                let rows: Vec<String> = (0..self.n(1, 5)).map(|_| self.scratch_row()).collect();
                format!("INSERT INTO {table} VALUES {}", rows.join(", "))
            }
            2 => {
                let src = self.table();
                let scope = scope_of(src, "w");
                let cols: Vec<String> = SCRATCH
                    .iter()
                    .map(|(_, ty)| self.expr(*ty, 1, &scope))
                    .collect();
                format!(
                    "INSERT INTO {table} SELECT {} FROM {} w LIMIT {}",
                    cols.join(", "),
                    src.name,
                    self.pick(&["10", "1000", "100000"])
                )
            }
            _ => format!(
                "INSERT INTO {table} (k, s) VALUES ({}, {})",
                { self.literal(Ty::Int) },
                self.literal(Ty::Text)
            ),
        }
    }

    fn update(&mut self) -> String {
        if self.p(0.4) {
            return if self.p(0.5) {
                self.merge()
            } else {
                self.upsert()
            };
        }
        let table = self.scratch();
        let scope = Self::scratch_scope();
        let (col, ty) = self.pick(SCRATCH);
        format!(
            "UPDATE {table} SET {col} = {} WHERE {}",
            self.expr(ty, 2, &scope),
            self.expr(Ty::Bool, 2, &scope)
        )
    }

    /// MERGE of one scratch table into another (or itself), with random conditions.
    fn merge(&mut self) -> String {
        let (table, source) = (self.scratch(), self.scratch());
        fn scoped(qual: &'static str) -> impl Iterator<Item = Col> {
            SCRATCH.iter().map(move |(c, ty)| Col {
                qual: qual.to_string(),
                name: c,
                ty: *ty,
            })
        }
        let both: Vec<Col> = scoped("t").chain(scoped("s")).collect();
        let from_source: Vec<Col> = scoped("s").collect();
        let (col, ty) = self.pick(SCRATCH);
        let on = if self.p(0.7) {
            "t.k = s.k".to_string()
        } else {
            self.expr(Ty::Bool, 1, &both)
        };
        let mut sql = format!("MERGE INTO {table} t USING {source} s ON {on}");
        if self.p(0.5) {
            sql += &format!(
                " WHEN MATCHED AND {} THEN DELETE",
                self.expr(Ty::Bool, 1, &both)
            );
        }
        if self.p(0.8) {
            sql += &format!(
                " WHEN MATCHED THEN UPDATE SET {col} = {}",
                self.expr(ty, 2, &both)
            );
        }
        if self.p(0.3) {
            sql += " WHEN NOT MATCHED BY SOURCE THEN DELETE";
        }
        sql += &format!(
            " WHEN NOT MATCHED THEN INSERT (k, s) VALUES ({}, {})",
            self.expr(Ty::Int, 1, &from_source),
            self.expr(Ty::Text, 1, &from_source)
        );
        sql
    }

    /// INSERT … ON CONFLICT into a scratch table, keys possibly repeated.
    fn upsert(&mut self) -> String {
        let table = self.scratch();
        let rows: Vec<String> = (0..self.n(1, 4))
            .map(|_| format!("({}, {})", self.literal(Ty::Int), self.literal(Ty::Text)))
            .collect();
        let action = self.pick(&[
            "DO NOTHING",
            "DO UPDATE SET s = excluded.s",
            "DO UPDATE SET v = excluded.k + 1 WHERE excluded.k > 0",
        ]);
        format!(
            "INSERT INTO {table} (k, s) VALUES {} ON CONFLICT (k) {action}",
            rows.join(", ")
        )
    }

    fn delete(&mut self) -> String {
        let table = self.scratch();
        let scope = Self::scratch_scope();
        if self.p(0.2) {
            format!("TRUNCATE {table}")
        } else {
            format!(
                "DELETE FROM {table} WHERE {}",
                self.expr(Ty::Bool, 2, &scope)
            )
        }
    }

    fn ddl(&mut self) -> String {
        let table = self.pick(&["fz_0", "fz_1", "fz_2", "fz_new"]);
        match self.n(0, 7) {
            0 => format!("DROP TABLE IF EXISTS {table}"),
            1 => format!(
                "CREATE TABLE {table} AS SELECT k, v, s, b, t FROM {} LIMIT {}",
                self.pick(&["fz_0", "fz_1", "fz_2"]),
                self.pick(&["10", "100000"])
            ),
            2 => setup()[self.n(0, 2)].clone(),
            3 => format!(
                "ALTER TABLE {table} RENAME TO {}",
                self.pick(&["fz_0", "fz_1", "fz_2", "fz_new", "\"../../x\""])
            ),
            4 => format!("CREATE VIEW fz_view AS {}", self.select(1)),
            5 => "DROP VIEW IF EXISTS fz_view".into(),
            6 => format!(
                "CREATE SCHEMA {}",
                self.pick(&["fz_schema", "\"../../x\"", "\"a/b\"", "\"\"", "\"x\u{1}y\""])
            ),
            _ => format!(
                "CREATE TABLE fz_wide ({})",
                (0..self.n(0, 2000))
                    .map(|i| format!("c{i} BIGINT"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
        }
    }

    // ---- flashsql's relation functions ------------------------------------------------

    fn number_option(&mut self) -> String {
        self.pick(&[
            "0",
            "1",
            "-1",
            "0.5",
            "100",
            "50000",
            "1e12",
            "1e308",
            "9223372036854775807",
            "CAST('NaN' AS DOUBLE PRECISION)",
            "NULL",
            "'ten'",
        ])
        .to_string()
    }

    fn curves(&mut self) -> String {
        match self.n(0, 2) {
            0 => format!(
                "SELECT x.item_id, x.discount, count(*) * avg(CASE WHEN x.purchased THEN 1.0 \
                 ELSE 0.0 END) AS expected_units, i.base_price AS price, i.unit_cost, \
                 {} AS inventory FROM exposures x JOIN items i USING (item_id) GROUP BY 1, 2, 4, 5",
                self.pick(&["100", "0", "-1", "NULL", "i.inventory"])
            ),
            1 => {
                let rows: Vec<String> = (0..self.n(1, 6))
                    .map(|_| {
                        format!(
                            "({}, {}, {}, {}, {}, {})",
                            self.literal(Ty::Int),
                            self.literal(Ty::Float),
                            self.literal(Ty::Float),
                            self.literal(Ty::Float),
                            self.literal(Ty::Float),
                            self.literal(Ty::Int)
                        )
                    })
                    .collect();
                format!(
                    "SELECT * FROM (VALUES {}) AS c(item_id, discount, expected_units, price, \
                     unit_cost, inventory)",
                    rows.join(", ")
                )
            }
            _ => format!(
                "SELECT k AS item_id, {} AS discount, {} AS expected_units, 10.0 AS price, \
                 1.0 AS unit_cost, NULL AS inventory FROM generate_series(1, {}) AS g(k)",
                self.pick(&["0.1", "(k % 5) / 10.0", "-0.5", "2"]),
                self.pick(&["1.0", "k", "CAST('NaN' AS DOUBLE)"]),
                self.pick(&["10", "10000", "3000000"])
            ),
        }
    }

    fn relation_function(&mut self) -> String {
        match self.n(0, 6) {
            0 | 1 => {
                let mut opts = vec![format!("budget => {}", self.number_option())];
                if self.p(0.5) {
                    opts.push(format!(
                        "objective => {}",
                        self.pick(&["'revenue'", "'profit'", "'bogus'", "NULL"])
                    ));
                }
                if self.p(0.5) {
                    opts.push(format!(
                        "solver => {}",
                        self.pick(&["'exact'", "'lagrangian'", "'simplex'"])
                    ));
                }
                if self.p(0.3) {
                    opts.push(format!("tolerance => {}", self.number_option()));
                }
                if self.p(0.1) {
                    opts.push(format!("nonsense => {}", self.number_option()));
                }
                if self.p(0.1) {
                    opts.pop();
                }
                format!(
                    "SELECT * FROM optimize_discounts(({}), {})",
                    self.curves(),
                    opts.join(", ")
                )
            }
            2 => {
                let mut opts = vec![format!("periods_left => {}", self.number_option())];
                if self.p(0.6) {
                    opts.push(format!("budget => {}", self.number_option()));
                }
                if self.p(0.5) {
                    opts.push(format!(
                        "estimate => {}",
                        self.pick(&["'sample'", "'mean'", "'median'"])
                    ));
                }
                opts.push(format!("seed => {}", self.number_option()));
                format!(
                    "SELECT * FROM next_discounts((SELECT x.item_id, x.discount, i.base_price AS \
                     price, i.unit_cost, {} AS inventory, {} AS traffic, count(*) AS shown, \
                     count(*) FILTER (WHERE x.purchased) AS sold FROM exposures x JOIN items i \
                     USING (item_id) GROUP BY 1, 2, 3, 4), {})",
                    self.pick(&["50", "0", "-3", "NULL"]),
                    self.pick(&["100", "0", "1e9", "NULL"]),
                    opts.join(", ")
                )
            }
            3 => {
                let scenario = self.pick(&[
                    "'ferreira_single'",
                    "'gvr_exponential'",
                    "'world'",
                    "'mars'",
                ]);
                let policy = self.pick(&[
                    "'ts_update'",
                    "'ts_fixed'",
                    "'ts_blind'",
                    "'greedy'",
                    "'fixed'",
                    "'clairvoyant'",
                    "'dp'",
                    "'uniform'",
                    "'optimized'",
                    "'random'",
                ]);
                format!(
                    "SELECT * FROM simulate_flash_sale(scenario => {scenario}, policy => \
                     {policy}, horizon => {}, trials => {}, seed => 1)",
                    self.pick(&["10", "1000", "0", "-5", "100000000", "1e18"]),
                    self.pick(&["1", "10", "0", "100000000"])
                )
            }
            4 => format!(
                "SELECT * FROM train_model('fz_model', (SELECT x.purchased AS label, \
                 CAST(NULL AS BIGINT[]) AS seq, i.category_id, i.base_price AS price, \
                 x.discount, x.user_id FROM exposures x JOIN items i USING (item_id) LIMIT {}), \
                 epochs => {}, sequence => false, seed => 1{})",
                self.pick(&["200", "0", "5"]),
                self.pick(&["1", "0", "-1", "1000000000"]),
                self.pick(&[
                    "",
                    ", batch_size => 0",
                    ", embed_dim => 100000",
                    ", learning_rate => 'NaN'",
                    ", split => 'time'",
                    ", kind => 'gbdt'",
                    ", device => 'cuda:7'",
                ])
            ),
            5 => format!(
                "SELECT * FROM drop_model({}{})",
                self.model_name(),
                self.pick(&["", ", 1", ", -1", ", NULL"])
            ),
            _ => "SELECT name, version, kind FROM flashsql.flashsql_models".into(),
        }
    }

    // ---- sessions, transactions, cursors -----------------------------------------------

    fn transaction(&mut self) -> String {
        match self.n(0, 5) {
            0 => "BEGIN".into(),
            1 => "COMMIT".into(),
            2 => "ROLLBACK".into(),
            3 => format!("SAVEPOINT s{}", self.n(0, 2)),
            4 => format!("ROLLBACK TO SAVEPOINT s{}", self.n(0, 2)),
            _ => format!(
                "BEGIN; {}; {}",
                self.insert(),
                self.pick(&["COMMIT", "ROLLBACK"])
            ),
        }
    }

    fn session_statement(&mut self) -> String {
        // statement_timeout is the fuzzer's own guard against hangs: never changed here.
        let setting = self.pick(&[
            "search_path",
            "application_name",
            "datestyle",
            "extra_float_digits",
            "TimeZone",
            "client_encoding",
            "default_transaction_read_only",
            "datafusion.execution.batch_size",
            "datafusion.execution.target_partitions",
            "no_such_setting",
        ]);
        match self.n(0, 2) {
            0 => format!(
                "SET {setting} = {}",
                self.pick(&[
                    "'public'",
                    "DEFAULT",
                    "0",
                    "-1",
                    "100000000000",
                    "'UTF8'",
                    "'LATIN1'",
                    "'Mars/Olympus'",
                    "'ISO, MDY'",
                    "'off'",
                ])
            ),
            1 => format!("SHOW {setting}"),
            _ => format!("SELECT current_setting('{setting}')"),
        }
    }

    fn cursor_or_prepared(&mut self) -> String {
        match self.n(0, 6) {
            0 => format!("DECLARE c{} CURSOR FOR {}", self.n(0, 1), self.select(1)),
            1 => format!(
                "FETCH {} FROM c{}",
                self.pick(&["1", "100", "ALL", "-1", "FORWARD 0"]),
                self.n(0, 1)
            ),
            2 => format!("CLOSE c{}", self.n(0, 1)),
            3 => format!(
                "PREPARE p{} AS SELECT {}",
                self.n(0, 1),
                self.pick(&["$1 + 1", "$1", "$2::text || $1", "$1000"])
            ),
            4 => format!(
                "EXECUTE p{}({})",
                self.n(0, 1),
                self.pick(&["1", "'x'", "", "1, 2", "9223372036854775807"])
            ),
            5 => format!("DEALLOCATE p{}", self.n(0, 1)),
            _ => "DEALLOCATE ALL; CLOSE ALL".to_string(),
        }
    }

    // ---- pathological shapes -----------------------------------------------------------

    fn deep(&mut self) -> String {
        let n = self.pick(&[50usize, 500, 2_000, 10_000, 20_000]);
        match self.n(0, 6) {
            0 => format!("SELECT 1{}", " + 1".repeat(n)),
            1 => format!("SELECT {}1{}", "(".repeat(n), ")".repeat(n)),
            2 => format!(
                "SELECT {}1{}",
                "CASE WHEN TRUE THEN ".repeat(n),
                " ELSE 0 END".repeat(n)
            ),
            3 => format!("SELECT {}1{}", "(SELECT ".repeat(n), ")".repeat(n)),
            4 => format!(
                "SELECT * FROM events WHERE {}",
                (0..n.min(5_000))
                    .map(|i| format!("user_id = {i}"))
                    .collect::<Vec<_>>()
                    .join(" OR ")
            ),
            5 => format!(
                "SELECT {} FROM items",
                (0..n.min(5_000))
                    .map(|i| format!("item_id + {i}"))
                    .collect::<Vec<_>>()
                    .join(", ")
            ),
            _ => format!("SELECT ARRAY[{}]", vec!["1"; n].join(", ")),
        }
    }

    fn hostile_path(&mut self) -> String {
        let path = self.pick(&[
            "/etc/passwd",
            "/etc/shadow",
            "../../../../etc/hosts",
            "/proc/self/environ",
            "/",
            "import/../../",
        ]);
        match self.n(0, 3) {
            0 => {
                format!("CREATE EXTERNAL TABLE fz_ext (line TEXT) STORED AS CSV LOCATION '{path}'")
            }
            1 => format!("SELECT * FROM load_file('taobao', '{path}', table => 'fz_loaded')"),
            2 => format!("COPY fz_0 TO '{path}'"),
            _ => format!("COPY fz_0 FROM '{path}'"),
        }
    }

    fn catalog_query(&mut self) -> String {
        self.pick(&[
            "SELECT * FROM pg_catalog.pg_class",
            "SELECT * FROM information_schema.columns",
            "SELECT c.relname, a.attname FROM pg_catalog.pg_class c JOIN \
             pg_catalog.pg_attribute a ON a.attrelid = c.oid",
            "SELECT pg_get_serial_sequence('fz_0', 'k')",
            "SELECT format_type(23, -1), pg_table_is_visible(0), has_table_privilege('x', 'y')",
            "SELECT version(), current_database(), current_schema()",
            "SELECT * FROM pg_catalog.pg_type WHERE oid = 99999999",
        ])
        .to_string()
    }

    /// A token-level mutation: cut, drop, repeat or swap a piece, or splice in a keyword.
    fn mutate(&mut self, sql: &str) -> String {
        let tokens: Vec<&str> = sql.split(' ').collect();
        let i = self.n(0, tokens.len() - 1);
        let j = self.n(0, tokens.len() - 1);
        let mut out: Vec<String> = tokens.iter().map(|t| t.to_string()).collect();
        match self.n(0, 5) {
            0 => out.truncate(i.max(1)),
            1 => {
                out.remove(i);
            }
            2 => out.insert(i, out[j].clone()),
            3 => out.swap(i, j),
            4 => {
                let junk = self.pick(&[
                    "(", ")", ",", ";", "'", "\"", "$1", "::", "SELECT", "FROM", "NULL", "*", "--",
                    "/*", "\\", "E'", "$$", "ARRAY[", "OVER", "\u{1}",
                ]);
                out.insert(i, junk.to_string());
            }
            _ => {
                let cut = out.join(" ");
                let mut at = self.n(0, cut.len());
                while !cut.is_char_boundary(at) {
                    at -= 1;
                }
                return cut[..at].to_string();
            }
        }
        out.join(" ")
    }
}

fn scope_of(t: &Table, qual: &str) -> Vec<Col> {
    t.columns
        .iter()
        .map(|(name, ty)| Col {
            qual: qual.into(),
            name,
            ty: *ty,
        })
        .collect()
}

fn type_name(ty: Ty) -> &'static str {
    match ty {
        Ty::Int => "BIGINT",
        Ty::Float => "DOUBLE PRECISION",
        Ty::Text => "TEXT",
        Ty::Bool => "BOOLEAN",
        Ty::Ts => "TIMESTAMP",
        Ty::IntList => "BIGINT[]",
        Ty::FloatList => "DOUBLE PRECISION[]",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_same_seed_gives_the_same_statements() {
        let a: Vec<String> = {
            let mut g = SqlGen::new(5);
            (0..200).map(|_| g.statement()).collect()
        };
        let mut g = SqlGen::new(5);
        let b: Vec<String> = (0..200).map(|_| g.statement()).collect();
        assert_eq!(a, b);
        let mut g = SqlGen::new(6);
        let c: Vec<String> = (0..200).map(|_| g.statement()).collect();
        assert_ne!(a, c);
    }
}
