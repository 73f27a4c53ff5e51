//! Loading files: `flashsql load` on the command line and `load_file(…)` in SQL. The public
//! samples in `../shared/data` (or `FLASHSQL_REAL_DATA`) are used when present; the tests
//! that need them say so and skip otherwise.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::process::Command;

use crate::common::{TestServer, scalar_i64, sqlstate};

fn real_data(file: &str) -> Option<PathBuf> {
    let root = std::env::var_os("FLASHSQL_REAL_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data"));
    let path = root.join(file);
    path.exists().then(|| path.canonicalize().unwrap_or(path))
}

/// The fields of one CSV line (double quotes may enclose commas).
fn csv_fields(line: &str) -> Vec<String> {
    let (mut fields, mut field, mut quoted) = (Vec::new(), String::new(), false);
    for c in line.chars() {
        match c {
            '"' => quoted = !quoted,
            ',' if !quoted => fields.push(std::mem::take(&mut field)),
            c => field.push(c),
        }
    }
    fields.push(field);
    fields
}

fn cli_load(data: &Path, args: &[&str]) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_flashsql"))
        .arg("load")
        .args(args)
        .arg("--data-dir")
        .arg(data)
        .env("RUST_LOG", "warn")
        .output()
        .expect("flashsql load runs")
}

/// `flashsql load taobao` maps the Tianchi log onto the events model: the same rows per
/// behaviour as the file (pv → view, buy → purchase), the same per-user sequences as the raw
/// file read directly, and a model trains on it.
#[tokio::test]
async fn flashsql_load_taobao_feeds_sequences_and_training() {
    let Some(csv) = real_data("taobao/user_behavior_sample.csv") else {
        eprintln!(
            "skipping flashsql_load_taobao_feeds_sequences_and_training: no taobao/user_behavior_sample.csv under ../shared/data or FLASHSQL_REAL_DATA"
        );
        return;
    };
    let tmp = tempfile::tempdir().expect("temp dir");
    let data = tmp.path().join("data");
    let out = cli_load(
        &data,
        &["taobao", &csv.display().to_string(), "--table", "tb_events"],
    );
    assert!(
        out.status.success(),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
    let said = String::from_utf8_lossy(&out.stdout);
    assert!(
        said.contains("loaded 61161 rows into public.tb_events"),
        "{said}"
    );

    // The reference: behaviours counted from the file itself.
    let mut expected: BTreeMap<String, i64> = BTreeMap::new();
    for line in std::fs::read_to_string(&csv).expect("read").lines() {
        let kind = line.split(',').nth(3).unwrap_or_default();
        let kind = match kind {
            "pv" => "view",
            "buy" => "purchase",
            other => other,
        };
        *expected.entry(kind.to_string()).or_default() += 1;
    }

    let allow = [
        "--allow-path".to_string(),
        csv.parent().expect("dir").display().to_string(),
    ];
    let allow: Vec<&str> = allow.iter().map(String::as_str).collect();
    let server = TestServer::try_start(&data, &[], &allow).expect("server starts");
    let client = server.connect().await;
    let rows = client
        .query(
            "SELECT event_type, count(*) FROM tb_events GROUP BY event_type ORDER BY event_type",
            &[],
        )
        .await
        .expect("counts");
    let loaded: BTreeMap<String, i64> = rows.iter().map(|r| (r.get(0), r.get(1))).collect();
    assert_eq!(loaded, expected);
    assert_eq!(
        scalar_i64(
            &client,
            "SELECT count(*) FROM information_schema.tables WHERE table_name = 'users'"
        )
        .await,
        0,
        "no generated world in a loaded data directory"
    );
    // A loaded behaviour log is stored per user in time, as the generated events are.
    assert_eq!(
        crate::storage_layout::assert_files_sorted(&data, "tb_events"),
        61161
    );

    // Sequences from the loaded table equal those from the raw file read directly.
    client
        .batch_execute(&format!(
            "CREATE EXTERNAL TABLE raw_tb (user_id BIGINT, item_id BIGINT, category_id BIGINT, \
               behavior_type TEXT, ts_s BIGINT) STORED AS CSV LOCATION '{}' \
               OPTIONS ('format.has_header' 'false'); \
             CREATE VIEW raw_events AS SELECT user_id, category_id, to_timestamp(ts_s) AS ts, \
               CASE behavior_type WHEN 'pv' THEN 'view' WHEN 'buy' THEN 'purchase' \
                 ELSE behavior_type END AS event_type FROM raw_tb",
            csv.display()
        ))
        .await
        .expect("raw view");
    let cutoff = "TIMESTAMP '2017-12-02 16:00:00'";
    let same = scalar_i64(
        &client,
        &format!(
            "SELECT count(*) FROM \
               (SELECT user_id, behavior_sequence(event_type, category_id, ts, 64, {cutoff}) AS s \
                  FROM tb_events GROUP BY user_id) a \
             JOIN (SELECT user_id, behavior_sequence(event_type, category_id, ts, 64, {cutoff}) AS s \
                  FROM raw_events GROUP BY user_id) b USING (user_id) \
             WHERE a.s = b.s"
        ),
    )
    .await;
    let users = scalar_i64(&client, "SELECT count(DISTINCT user_id) FROM tb_events").await;
    assert_eq!(same, users, "every user's sequence matches the raw file's");

    // A purchase model trains on examples built from the loaded table.
    client
        .batch_execute(&format!(
            "CREATE TABLE tb_examples AS SELECT user_id, \
               max(CASE WHEN event_type = 'purchase' AND ts >= {cutoff} THEN 1 ELSE 0 END) = 1 AS label, \
               behavior_sequence(event_type, category_id, ts, 64, {cutoff}) AS seq, \
               [CAST(count(*) FILTER (WHERE ts < {cutoff}) AS DOUBLE)] AS features \
             FROM tb_events GROUP BY user_id"
        ))
        .await
        .expect("examples");
    let trained = client
        .simple_query(
            "SELECT * FROM train_model('tb_model', (SELECT label, seq, features, user_id FROM tb_examples), \
             kind => 'propensity', batch_size => 64, epochs => 2, seed => 1)",
        )
        .await
        .expect("trains");
    assert!(
        trained
            .iter()
            .any(|m| matches!(m, tokio_postgres::SimpleQueryMessage::Row(_)))
    );
    assert_eq!(
        scalar_i64(
            &client,
            "SELECT count(*) FROM tb_examples WHERE propensity('tb_model', seq, features) BETWEEN 0 AND 1"
        )
        .await,
        users
    );

    // The CLI refuses a data directory a server holds.
    let out = cli_load(
        &data,
        &["csv", &csv.display().to_string(), "--table", "again"],
    );
    assert!(!out.status.success());
    assert!(
        String::from_utf8_lossy(&out.stderr).contains("in use by another flashsql process"),
        "{}",
        String::from_utf8_lossy(&out.stderr)
    );
}

/// `load_file` in SQL: reads only allowed directories, loads all or nothing with the line and
/// column of a bad value, refuses read-only sessions, and maps Hillstrom's experiment.
#[tokio::test]
async fn load_file_in_sql() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let data = tmp.path().join("data");
    let server = TestServer::start_in(&data, &[]);
    let client = server.connect().await;
    let import = data.join("import");
    std::fs::write(import.join("prices.csv"), "item_id,price\n1,9.5\n2,12.0\n").expect("write");
    // The session's own temporary tables are left alone by a load.
    client
        .batch_execute("CREATE TEMPORARY TABLE src AS SELECT 1 AS one")
        .await
        .expect("temp table");
    let rows = client
        .query(
            &format!(
                "SELECT * FROM load_file('csv', '{}', table => 'prices')",
                import.join("prices.csv").display()
            ),
            &[],
        )
        .await
        .expect("loads");
    assert_eq!(rows[0].get::<_, String>(0), "public.prices");
    assert_eq!(rows[0].get::<_, i64>(1), 2);
    assert_eq!(
        scalar_i64(
            &client,
            "SELECT CAST(sum(price) * 10 AS BIGINT) FROM prices"
        )
        .await,
        215
    );
    assert_eq!(
        scalar_i64(&client, "SELECT CAST(one AS BIGINT) FROM src").await,
        1
    );

    // A bad value: 22P02 naming file, line and column; no table.
    let bad = import.join("bad_taobao.csv");
    std::fs::write(&bad, "1,2,3,pv,1511625600\n1,2,3,buy,not-a-time\n").expect("write");
    let err = client
        .simple_query(&format!(
            "SELECT * FROM load_file('taobao', '{}', table => 'bad')",
            bad.display()
        ))
        .await
        .expect_err("malformed");
    assert_eq!(sqlstate(&err), "22P02", "{err:?}");
    let message = err
        .as_db_error()
        .map(|d| d.message().to_string())
        .unwrap_or_default();
    assert!(message.contains("line 2, column 5"), "{message}");
    let err = client
        .simple_query("SELECT * FROM bad")
        .await
        .expect_err("no table");
    assert_eq!(sqlstate(&err), "42P01");

    // Outside the allowed directories.
    let err = client
        .simple_query("SELECT * FROM load_file('csv', '/etc/passwd', table => 'pw')")
        .await
        .expect_err("denied");
    assert_eq!(sqlstate(&err), "42501", "{err:?}");

    // A read-only session may not load.
    client
        .batch_execute("SET default_transaction_read_only = on")
        .await
        .expect("set");
    let err = client
        .simple_query(&format!(
            "SELECT * FROM load_file('csv', '{}', table => 'prices2')",
            import.join("prices.csv").display()
        ))
        .await
        .expect_err("read only");
    assert_eq!(sqlstate(&err), "25006");
    client
        .batch_execute("SET default_transaction_read_only = off")
        .await
        .expect("set");

    let Some(hillstrom) = real_data("hillstrom/hillstrom.csv") else {
        eprintln!("skipping the Hillstrom part of load_file_in_sql: no hillstrom/hillstrom.csv");
        return;
    };
    let copy = import.join("hillstrom.csv");
    std::fs::copy(&hillstrom, &copy).expect("copy");
    client
        .batch_execute(&format!(
            "SELECT * FROM load_file('hillstrom', '{}')",
            copy.display()
        ))
        .await
        .expect("loads");
    // The reference: conversions per arm counted from the file.
    let mut expected: BTreeMap<String, (i64, i64)> = BTreeMap::new();
    for line in std::fs::read_to_string(&hillstrom)
        .expect("read")
        .lines()
        .skip(1)
    {
        let f = csv_fields(line);
        let e = expected.entry(f[8].to_string()).or_default();
        e.0 += 1;
        e.1 += i64::from(f[10] == "1");
    }
    let rows = client
        .query(
            "SELECT variant, count(*), count(*) FILTER (WHERE converted) FROM hillstrom \
             GROUP BY variant ORDER BY variant",
            &[],
        )
        .await
        .expect("arms");
    let loaded: BTreeMap<String, (i64, i64)> = rows
        .iter()
        .map(|r| (r.get(0), (r.get(1), r.get(2))))
        .collect();
    assert_eq!(loaded, expected);
}

/// `mode => 'append'` (and `flashsql load --append`): the next day's log into the same table,
/// all or nothing; a file whose columns differ is refused (42804).
#[tokio::test]
async fn loads_append_to_an_existing_table() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let data = tmp.path().join("data");
    let import = data.join("import");
    std::fs::create_dir_all(&import).expect("import dir");
    let day1 = import.join("day1.csv");
    let day2 = import.join("day2.csv");
    let bad = import.join("day3.csv");
    std::fs::write(&day1, "1,10,3,pv,1511625600\n1,10,3,buy,1511625700\n").expect("write");
    std::fs::write(&day2, "2,11,3,pv,1511712000\n").expect("write");
    std::fs::write(&bad, "3,12,3,pv,1511800000\n3,12,3,buy,not-a-time\n").expect("write");
    std::fs::write(import.join("prices.csv"), "item_id,price\n1,9.5\n").expect("write");

    // On the command line, before a server runs.
    let out = cli_load(
        &data,
        &["taobao", &day1.to_string_lossy(), "--table", "log"],
    );
    assert!(out.status.success(), "{out:?}");
    let out = cli_load(
        &data,
        &[
            "taobao",
            &day2.to_string_lossy(),
            "--table",
            "log",
            "--append",
        ],
    );
    assert!(out.status.success(), "{out:?}");
    let out = cli_load(
        &data,
        &["taobao", &day2.to_string_lossy(), "--table", "log"],
    );
    assert!(
        !out.status.success(),
        "a second create of the same table is refused"
    );

    // In SQL, on the server.
    let server = TestServer::start_in(&data, &[]);
    let client = server.connect().await;
    assert_eq!(scalar_i64(&client, "SELECT count(*) FROM log").await, 3);
    let rows = client
        .query(
            &format!(
                "SELECT * FROM load_file('taobao', '{}', table => 'log', mode => 'append')",
                day2.display()
            ),
            &[],
        )
        .await
        .expect("appends");
    assert_eq!(rows[0].get::<_, i64>(1), 1);
    assert_eq!(scalar_i64(&client, "SELECT count(*) FROM log").await, 4);
    assert_eq!(
        scalar_i64(
            &client,
            "SELECT count(*) FROM log WHERE event_type = 'purchase'"
        )
        .await,
        1
    );

    // A malformed file appends nothing.
    let err = client
        .simple_query(&format!(
            "SELECT * FROM load_file('taobao', '{}', table => 'log', mode => 'append')",
            bad.display()
        ))
        .await
        .expect_err("malformed");
    assert_eq!(sqlstate(&err), "22P02", "{err:?}");
    assert_eq!(scalar_i64(&client, "SELECT count(*) FROM log").await, 4);

    // Other columns: refused, nothing appended.
    let err = client
        .simple_query(&format!(
            "SELECT * FROM load_file('csv', '{}', table => 'log', mode => 'append')",
            import.join("prices.csv").display()
        ))
        .await
        .expect_err("other columns");
    assert_eq!(sqlstate(&err), "42804", "{err:?}");
    assert_eq!(scalar_i64(&client, "SELECT count(*) FROM log").await, 4);
    let err = client
        .simple_query(&format!(
            "SELECT * FROM load_file('taobao', '{}', table => 'log', mode => 'sometimes')",
            day2.display()
        ))
        .await
        .expect_err("no such mode");
    assert_eq!(sqlstate(&err), "22023", "{err:?}");
    // Appending to a table that does not exist: 42P01.
    let err = client
        .simple_query(&format!(
            "SELECT * FROM load_file('taobao', '{}', table => 'nope', mode => 'append')",
            day2.display()
        ))
        .await
        .expect_err("no table");
    assert_eq!(sqlstate(&err), "42P01", "{err:?}");
}

/// `flashsql load obd`: one exposure per logged row, with the logging policy's propensity,
/// and the user–item affinities (all as a list, and the shown item's), checked against the
/// file's own columns.
#[tokio::test]
async fn obd_loads_exposures_with_affinities() {
    let tmp = tempfile::tempdir().expect("temp dir");
    let data = tmp.path().join("data");
    let import = data.join("import");
    std::fs::create_dir_all(&import).expect("import dir");
    let small = import.join("obd_small.csv");
    std::fs::write(
        &small,
        ",timestamp,item_id,position,click,propensity_score,user_feature_0,user_feature_1,\
         user_feature_2,user_feature_3,user-item_affinity_0,user-item_affinity_1,\
         user-item_affinity_2\n\
         0,2019-11-24 00:00:17.570028+00:00,2,1,0,0.25,a,b,c,d,0.0,1.0,2.5\n\
         1,2019-11-24 00:00:18.000000+00:00,0,2,1,0.5,a,b,c,d,3.0,0.0,0.0\n",
    )
    .expect("write");
    let out = cli_load(
        &data,
        &["obd", &small.to_string_lossy(), "--table", "small"],
    );
    assert!(out.status.success(), "{out:?}");
    let mut expected = None;
    if let Some(real) = real_data("obd/random_all.csv") {
        let out = cli_load(&data, &["obd", &real.to_string_lossy(), "--table", "obd"]);
        assert!(out.status.success(), "{out:?}");
        // The shown item's affinity read from the file's own columns.
        let text = std::fs::read_to_string(&real).expect("read");
        let mut lines = text.lines();
        let header = csv_fields(lines.next().expect("header"));
        let item = header.iter().position(|c| c == "item_id").expect("item_id");
        let (mut rows, mut sum) = (0i64, 0f64);
        for line in lines.filter(|l| !l.is_empty()) {
            let f = csv_fields(line);
            let column = format!("user-item_affinity_{}", f[item]);
            let at = header
                .iter()
                .position(|c| *c == column)
                .expect("affinity column");
            sum += f[at].parse::<f64>().expect("number");
            rows += 1;
        }
        let items = header
            .iter()
            .filter(|c| c.starts_with("user-item_affinity_"))
            .count() as i64;
        expected = Some((rows, sum, items));
    } else {
        eprintln!("skipping the real OBD part: no obd/random_all.csv");
    }
    let server = TestServer::start_in(&data, &[]);
    let client = server.connect().await;
    let rows = client
        .query(
            "SELECT item_id, position, clicked, propensity, affinity, \
             CAST(cardinality(affinities) AS BIGINT) \
             FROM small ORDER BY exposure_id",
            &[],
        )
        .await
        .expect("read");
    let got: Vec<(i64, i64, bool, f64, f64, i64)> = rows
        .iter()
        .map(|r| {
            (
                r.get(0),
                r.get(1),
                r.get(2),
                r.get(3),
                r.get(4),
                r.get::<_, i64>(5),
            )
        })
        .collect();
    assert_eq!(
        got,
        vec![(2, 1, false, 0.25, 2.5, 3), (0, 2, true, 0.5, 3.0, 3)]
    );
    if let Some((n, sum, items)) = expected {
        assert_eq!(scalar_i64(&client, "SELECT count(*) FROM obd").await, n);
        let row = client
            .query_one(
                "SELECT sum(affinity), CAST(min(cardinality(affinities)) AS BIGINT), \
                 CAST(max(cardinality(affinities)) AS BIGINT) FROM obd",
                &[],
            )
            .await
            .expect("sum");
        let (s, lo, hi): (f64, i64, i64) = (row.get(0), row.get::<_, i64>(1), row.get::<_, i64>(2));
        assert!((s - sum).abs() <= 1e-9 * sum.abs().max(1.0), "{s} vs {sum}");
        assert_eq!((lo, hi), (items, items));
    }
}
