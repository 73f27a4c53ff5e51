//! The analysis functions against their reference libraries on the same rows, over the
//! wire, each by a script in `benches/compare/` run against the test server:
//! - experiments (`ab_test`, `ttest`, `cuped_ttest`, `ttest_from_stats`, `srm_test`,
//!   `cuped`) against scipy and statsmodels on the Hillstrom experiment (when
//!   `../shared/data` has it, or `FLASHSQL_REAL_DATA`) and a seeded synthetic one, 1e-9;
//! - preprocessing (`standard_scaler`, `min_max_scaler`, `robust_scaler`, `is_outlier`,
//!   `quantile_bucketize`, `bucketize`) against scikit-learn and numpy, 1e-12;
//! - off-policy evaluation (`ope_ips`, `ope_snips`, `ope_dm`, `ope_dr`, `ope_switch_dr`)
//!   against the Open Bandit Pipeline's formulas on its Open Bandit Dataset sample, 1e-9;
//! - uplift (`qini_auc`, `uplift_auc`, `qini_curve`, `uplift_curve`) against scikit-uplift
//!   on Hillstrom, 1e-9;
//! - `train_model(kind => 'logistic')` against scikit-learn's `LogisticRegression` on seeded
//!   rows (features, an offer with the discount held non-negative, sequence counts):
//!   coefficients 1e-6, probabilities 1e-9.
//!
//! Each skips (saying so) without its Python libraries unless FLASHSQL_REQUIRE_CLIENTS=1.

use std::path::PathBuf;
use std::process::Command;

use crate::common::{TestServer, available};

/// Runs `benches/compare/{script}` with `args` against a fresh server; it must print
/// `{done}`. False (skipped) when python3 cannot import `modules`.
fn run_reference(script: &str, args: &[PathBuf], modules: &str, done: &str) -> bool {
    let found = Command::new("python3")
        .args(["-c", &format!("import {modules}")])
        .output()
        .is_ok_and(|o| o.status.success());
    if !available(
        found,
        "FLASHSQL_REQUIRE_CLIENTS",
        &format!("python3 cannot import {modules}; pip install them"),
    ) {
        return false;
    }
    let root = PathBuf::from(env!("CARGO_MANIFEST_DIR"));
    let server = TestServer::start();
    let out = Command::new("python3")
        .arg(root.join("benches/compare").join(script))
        .args(args)
        .env(
            "FLASHSQL_DSN",
            format!(
                "host={} port={} user=flashsql dbname=flashsql",
                server.addr.ip(),
                server.addr.port()
            ),
        )
        .output()
        .expect("python3 runs");
    let stdout = String::from_utf8_lossy(&out.stdout);
    let stderr = String::from_utf8_lossy(&out.stderr);
    println!("{stdout}");
    assert!(out.status.success(), "{stdout}\n{stderr}");
    assert!(stdout.contains(done), "{stdout}");
    true
}

/// The real data samples: `FLASHSQL_REAL_DATA`, else `../shared/data`.
fn real_data() -> PathBuf {
    std::env::var_os("FLASHSQL_REAL_DATA")
        .map(PathBuf::from)
        .unwrap_or_else(|| PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../shared/data"))
}

#[test]
fn experiment_functions_agree_with_scipy_and_statsmodels() {
    let data = real_data();
    run_reference(
        "experiments_vs_scipy.py",
        &[data.join("hillstrom/hillstrom.csv")],
        "numpy, scipy, statsmodels, psycopg",
        "experiments: ok",
    );
}

#[test]
fn preprocessing_functions_agree_with_scikit_learn() {
    run_reference(
        "preprocessing_vs_sklearn.py",
        &[],
        "numpy, sklearn, psycopg",
        "preprocessing: ok",
    );
}

#[test]
fn logistic_models_agree_with_scikit_learn() {
    run_reference(
        "logistic_vs_sklearn.py",
        &[],
        "numpy, sklearn, psycopg",
        "logistic: ok",
    );
}

#[test]
fn off_policy_estimators_agree_with_open_bandit_pipeline_formulas() {
    let obd = real_data().join("obd");
    if !obd.join("bts_all.csv").exists() {
        println!(
            "skipped: {} has no Open Bandit Dataset sample",
            obd.display()
        );
        return;
    }
    run_reference(
        "ope_vs_obp.py",
        &[obd],
        "numpy, scipy, statsmodels, psycopg",
        "off-policy: ok",
    );
}

#[test]
fn uplift_metrics_agree_with_scikit_uplift() {
    let hillstrom = real_data().join("hillstrom/hillstrom.csv");
    if !hillstrom.exists() {
        println!("skipped: no {}", hillstrom.display());
        return;
    }
    run_reference(
        "uplift_vs_sklift.py",
        &[hillstrom],
        "numpy, scipy, statsmodels, sklift, psycopg",
        "uplift: ok",
    );
}
