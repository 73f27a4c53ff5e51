//! L2-regularised logistic regression on standardised columns, fitted exactly by Newton's
//! method: with the few dozen columns of a tabular model the Hessian is small, so a handful
//! of Cholesky solves reach the optimum to machine precision — no learning rate, no epochs,
//! and the same answer as scikit-learn's `LogisticRegression` on the same rows.
//!
//! Objective (scikit-learn's, with `C = 1 / l2`):
//! `Σᵢ log(1 + exp(−yᵢ·(w·xᵢ + b))) + l2/2 · ‖w‖²`, the intercept unpenalised.
//!
//! A purchase model must not predict fewer sales at a deeper discount: the discount's
//! coefficient is constrained to be non-negative. The objective is strictly convex, so when
//! the unconstrained optimum has a negative discount coefficient the constrained one has it
//! at exactly 0, and is the optimum over the other columns.

use std::time::Instant;

use serde::{Deserialize, Serialize};

use crate::GpuError;
use crate::device::DeviceChoice;
use crate::importance::{Importance, permutation};
use crate::metrics::bce_with_logits;
use crate::purchase::{PurchaseConfig, Rows};
use crate::tabular::{
    CountsCache, TabularSpec, TabularTraining, design, design_with, discount_column,
    prepare_tabular,
};
use crate::train::{
    EpochReport, Prepared, SplitKeys, TrainOptions, Trained, calibrate_config, ranking,
};

/// A fitted logistic model: how to read and standardise its columns, and its weights.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct LogisticModel {
    pub config: PurchaseConfig,
    pub columns: Vec<String>,
    /// Mean and (population) standard deviation of each column on the training rows; 1
    /// when a column is constant there.
    pub mean: Vec<f64>,
    pub sd: Vec<f64>,
    /// Coefficients on the standardised columns.
    pub coef: Vec<f64>,
    pub intercept: f64,
    pub l2: f64,
}

impl LogisticModel {
    pub fn spec(&self) -> Result<&TabularSpec, GpuError> {
        self.config
            .tabular
            .as_ref()
            .ok_or_else(|| GpuError::Shape("a logistic model without its tabular spec".into()))
    }

    /// The logit of every row (after calibration, when the model has one); the rows'
    /// sequence counts are read from and kept in `counts` when given.
    pub fn logits(&self, rows: &Rows, counts: Option<&CountsCache>) -> Result<Vec<f64>, GpuError> {
        rows.check(&self.config)?;
        let d = self.columns.len();
        let x = design_with(&self.config, self.spec()?, rows, counts);
        let platt = self.config.calibration;
        Ok((0..rows.len())
            .map(|r| {
                let z = self.raw_logit(&x[r * d..(r + 1) * d]);
                platt.map_or(z, |p| p.apply(z))
            })
            .collect())
    }

    /// Each row's design values (`columns` wide) and its contributions: `coef × (x − mean) /
    /// sd` per column then the intercept (`columns + 1` wide), in the calibrated logit's units
    /// when the model is calibrated — they sum to the logit `purchase_prob` turns into P.
    pub fn contributions(&self, rows: &Rows) -> Result<(Vec<f64>, Vec<f64>), GpuError> {
        rows.check(&self.config)?;
        let d = self.columns.len();
        let x = design(&self.config, self.spec()?, rows);
        let (a, b) = self
            .config
            .calibration
            .map_or((1.0, 0.0), |p| (f64::from(p.a), f64::from(p.b)));
        let mut out = Vec::with_capacity(rows.len() * (d + 1));
        for row in x.chunks(d.max(1)).take(rows.len()) {
            for (j, &v) in row.iter().enumerate() {
                out.push(a * self.coef[j] * (v - self.mean[j]) / self.sd[j]);
            }
            out.push(a * self.intercept + b);
        }
        Ok((x, out))
    }

    /// The uncalibrated logit of one design row.
    pub fn raw_logit(&self, row: &[f64]) -> f64 {
        let mut z = self.intercept;
        for (j, &v) in row.iter().enumerate() {
            z += self.coef[j] * (v - self.mean[j]) / self.sd[j];
        }
        z
    }
}

/// The penalties tried when `train_model` is given none, largest first: the one with the
/// lowest validation log loss is kept, the larger on a tie. Five decades around
/// scikit-learn's default (C = 1) cover what its users tune over.
pub const L2_GRID: [f64; 5] = [100.0, 10.0, 1.0, 0.1, 0.01];

/// Trains a logistic model on the rows `config` describes (its `tabular` spec names the
/// learner and the sequence counts): the same seeded split and row order as the network,
/// and the discount's coefficient held non-negative for a purchase model. With `l2` given,
/// one report per Newton step (the last is kept: it is the optimum); without, one report per
/// penalty of [`L2_GRID`] at its optimum, and the best on the validation rows kept.
pub fn train(
    config: PurchaseConfig,
    rows: &Rows,
    labels: &[f32],
    keys: &SplitKeys,
    opts: &TrainOptions,
    l2: Option<f64>,
    on_report: &mut dyn FnMut(&EpochReport) -> Result<(), GpuError>,
) -> Result<Trained<LogisticModel>, GpuError> {
    let TabularTraining {
        columns,
        x,
        prepared:
            Prepared {
                rows: _,
                labels,
                fingerprint,
                train_idx,
                valid_idx,
                valid_rows,
                valid_labels,
            },
    } = prepare_tabular(&config, rows, labels, keys, opts)?;
    let d = columns.len();
    let (mean, sd) = standardisation(&x, d, &train_idx);
    let standardised = |idx: &[usize]| -> Vec<f64> {
        let mut out = Vec::with_capacity(idx.len() * d);
        for &r in idx {
            out.extend((0..d).map(|j| (x[r * d + j] - mean[j]) / sd[j]));
        }
        out
    };
    let (xt, xv) = (standardised(&train_idx), standardised(&valid_idx));
    let yt: Vec<f32> = train_idx.iter().map(|&r| labels[r]).collect();
    let logits_of = |xm: &[f64], w: &[f64], b: f64| -> Vec<f64> {
        xm.chunks(d)
            .map(|row| b + row.iter().zip(w).map(|(v, c)| v * c).sum::<f64>())
            .collect()
    };
    let mut reports: Vec<EpochReport> = Vec::new();
    let mut t0 = Instant::now();
    let mut on_iteration = |w: &[f64], b: f64| -> Result<(), GpuError> {
        let zv = logits_of(&xv, w, b);
        let valid_loss = bce_with_logits(&valid_labels, &zv);
        let (valid_auc, valid_logloss) = ranking(&valid_labels, &zv);
        let report = EpochReport {
            epoch: reports.len() + 1,
            train_loss: bce_with_logits(&yt, &logits_of(&xt, w, b)),
            valid_loss,
            valid_auc,
            valid_logloss,
            seconds: t0.elapsed().as_secs_f64(),
            improved: reports.iter().all(|r| valid_loss < r.valid_loss - 1e-7),
        };
        t0 = Instant::now();
        on_report(&report)?;
        reports.push(report);
        Ok(())
    };
    let nonnegative = discount_column(&config);
    let (f, l2, kept) = match l2 {
        Some(l2) => {
            let f = fit(&xt, d, &yt, l2, nonnegative, &mut on_iteration)?;
            (f, l2, None)
        }
        None => {
            let (mut fits, mut last_error) = (Vec::new(), None);
            for &l2 in &L2_GRID {
                // A small penalty may not converge on separable rows; the others still can.
                match fit(&xt, d, &yt, l2, nonnegative, &mut |_, _| Ok(())) {
                    Ok(f) => {
                        on_iteration(&f.coef, f.intercept)?;
                        fits.push((f, l2));
                    }
                    Err(e) => last_error = Some(e),
                }
            }
            // One report per fitted penalty, in grid order: the lowest validation loss wins,
            // the earlier (larger penalty) on a tie.
            let mut k: Option<usize> = None;
            for (i, r) in reports.iter().enumerate() {
                if k.is_none_or(|b| r.valid_loss < reports[b].valid_loss - 1e-9) {
                    k = Some(i);
                }
            }
            let Some(k) = k else {
                return Err(last_error
                    .unwrap_or_else(|| GpuError::Data("no penalty could be fitted".into())));
            };
            let (f, l2) = fits.swap_remove(k);
            tracing::info!(l2, "logistic: penalty chosen on the validation rows");
            (f, l2, Some(k + 1))
        }
    };
    if f.constrained {
        tracing::info!("logistic: the discount's coefficient is held at 0 (it fitted negative)");
    }
    let mut model = LogisticModel {
        config,
        columns,
        mean,
        sd,
        coef: f.coef,
        intercept: f.intercept,
        l2,
    };
    let zv = logits_of(&xv, &model.coef, model.intercept);
    let calibrated = calibrate_config(opts, &mut model.config, &zv, &valid_labels);
    let mut importance = permutation(&model.config, &valid_rows, &valid_labels, opts.seed, &|r| {
        model.logits(r, None)
    })?;
    importance.extend(
        model
            .columns
            .iter()
            .zip(&model.coef)
            .map(|(c, &w)| Importance {
                feature: c.clone(),
                measure: "coefficient".into(),
                value: w.abs(),
                coefficient: Some(w),
            }),
    );
    Ok(Trained {
        best_epoch: kept.unwrap_or(reports.len()),
        reports,
        model,
        device: DeviceChoice::Cpu,
        train_rows: train_idx.len(),
        valid_rows: valid_idx.len(),
        fingerprint,
        calibrated,
        importance,
    })
}

/// Column means and population standard deviations of the rows `idx` of `x` (`d` columns).
pub fn standardisation(x: &[f64], d: usize, idx: &[usize]) -> (Vec<f64>, Vec<f64>) {
    let n = idx.len().max(1) as f64;
    let mut mean = vec![0.0; d];
    for &r in idx {
        for (m, v) in mean.iter_mut().zip(&x[r * d..(r + 1) * d]) {
            *m += v;
        }
    }
    mean.iter_mut().for_each(|m| *m /= n);
    let mut var = vec![0.0; d];
    for &r in idx {
        for j in 0..d {
            var[j] += (x[r * d + j] - mean[j]).powi(2);
        }
    }
    let sd = var
        .iter()
        .map(|v| {
            let s = (v / n).sqrt();
            if s > 1e-12 { s } else { 1.0 }
        })
        .collect();
    (mean, sd)
}

/// Sees each Newton iterate (weights, intercept); an error stops the fit.
pub type OnIteration<'a> = dyn FnMut(&[f64], f64) -> Result<(), GpuError> + 'a;

/// What a fit found.
#[derive(Debug, Clone, PartialEq)]
pub struct Fit {
    pub coef: Vec<f64>,
    pub intercept: f64,
    pub iterations: usize,
    /// The regularised objective at the optimum.
    pub objective: f64,
    /// Whether the non-negativity constraint was active (the coefficient held at 0).
    pub constrained: bool,
}

/// Fits the weights on `x` (row-major, `d` columns, already standardised) and labels `y`
/// (0/1). `nonnegative`: a column whose coefficient must be ≥ 0. `on_iteration` sees each
/// Newton iterate (weights, intercept) and may stop the fit with an error.
pub fn fit(
    x: &[f64],
    d: usize,
    y: &[f32],
    l2: f64,
    nonnegative: Option<usize>,
    on_iteration: &mut OnIteration<'_>,
) -> Result<Fit, GpuError> {
    if !(l2.is_finite() && l2 >= 0.0) {
        return Err(GpuError::Data(format!("l2 must be ≥ 0, got {l2}")));
    }
    let all: Vec<usize> = (0..d).collect();
    let mut f = newton(x, d, y, l2, &all, on_iteration)?;
    if let Some(j) = nonnegative.filter(|&j| j < d && f.coef[j] < 0.0) {
        let kept: Vec<usize> = (0..d).filter(|&k| k != j).collect();
        f = newton(x, d, y, l2, &kept, on_iteration)?;
        f.constrained = true;
    }
    Ok(f)
}

/// Newton's method over the columns `active` (the others held at 0), with step halving so
/// the objective never rises. Stops when a step moves no weight by more than 1e-10.
fn newton(
    x: &[f64],
    d: usize,
    y: &[f32],
    l2: f64,
    active: &[usize],
    on_iteration: &mut OnIteration<'_>,
) -> Result<Fit, GpuError> {
    let n = y.len();
    if x.len() != n * d {
        return Err(GpuError::Shape("one design row per label is needed".into()));
    }
    let positives = y.iter().filter(|&&v| v > 0.5).count();
    if positives == 0 || positives == n {
        return Err(GpuError::Data(
            "the training rows hold one class only: logistic regression needs both labels".into(),
        ));
    }
    // Parameters: the active coefficients, then the intercept.
    let p = active.len() + 1;
    let mut theta = vec![0.0f64; p];
    let base = positives as f64 / n as f64;
    theta[p - 1] = (base / (1.0 - base)).ln();
    let full = |theta: &[f64]| -> Vec<f64> {
        let mut w = vec![0.0; d];
        for (k, &j) in active.iter().enumerate() {
            w[j] = theta[k];
        }
        w
    };
    let objective = |theta: &[f64]| -> f64 {
        let mut loss = 0.0;
        for (r, &yr) in y.iter().enumerate() {
            let z = linear(x, d, r, active, theta);
            loss += z.max(0.0) - z * f64::from(yr) + (-z.abs()).exp().ln_1p();
        }
        loss + 0.5 * l2 * theta[..p - 1].iter().map(|w| w * w).sum::<f64>()
    };
    let mut current = objective(&theta);
    for iteration in 1..=100 {
        // Gradient and Hessian of the objective.
        let mut g = vec![0.0f64; p];
        let mut h = vec![0.0f64; p * p];
        let mut xr = vec![0.0f64; p];
        for (r, &yr) in y.iter().enumerate() {
            for (k, &j) in active.iter().enumerate() {
                xr[k] = x[r * d + j];
            }
            xr[p - 1] = 1.0;
            let z = linear(x, d, r, active, &theta);
            let prob = 1.0 / (1.0 + (-z).exp());
            let (res, w) = (prob - f64::from(yr), prob * (1.0 - prob));
            for a in 0..p {
                g[a] += res * xr[a];
                let wa = w * xr[a];
                for b in 0..=a {
                    h[a * p + b] += wa * xr[b];
                }
            }
        }
        for a in 0..p - 1 {
            g[a] += l2 * theta[a];
            h[a * p + a] += l2;
        }
        for a in 0..p {
            for b in 0..a {
                h[b * p + a] = h[a * p + b];
            }
        }
        let step = cholesky_solve(&mut h, &g, p)?;
        let mut scale = 1.0;
        let mut next = theta.clone();
        let mut value = f64::INFINITY;
        for _ in 0..60 {
            for a in 0..p {
                next[a] = theta[a] - scale * step[a];
            }
            value = objective(&next);
            if value <= current + 1e-12 * current.abs().max(1.0) {
                break;
            }
            scale *= 0.5;
        }
        let moved = step.iter().map(|s| (s * scale).abs()).fold(0.0, f64::max);
        theta = next;
        current = value;
        on_iteration(&full(&theta), theta[p - 1])?;
        if moved < 1e-10 {
            return Ok(Fit {
                coef: full(&theta),
                intercept: theta[p - 1],
                iterations: iteration,
                objective: current,
                constrained: false,
            });
        }
    }
    Err(GpuError::Data(
        "logistic regression did not converge in 100 Newton steps (separable data? raise l2)"
            .into(),
    ))
}

#[inline]
fn linear(x: &[f64], d: usize, r: usize, active: &[usize], theta: &[f64]) -> f64 {
    let row = &x[r * d..(r + 1) * d];
    let mut z = theta[active.len()];
    for (k, &j) in active.iter().enumerate() {
        z += theta[k] * row[j];
    }
    z
}

/// Solves `H·s = g` for a symmetric positive definite `H` (`p × p`, overwritten by its
/// Cholesky factor).
fn cholesky_solve(h: &mut [f64], g: &[f64], p: usize) -> Result<Vec<f64>, GpuError> {
    for j in 0..p {
        let mut s = h[j * p + j];
        for k in 0..j {
            s -= h[j * p + k] * h[j * p + k];
        }
        if s <= 0.0 || !s.is_finite() {
            return Err(GpuError::Data(
                "logistic regression: the Hessian is singular (a column repeats another? raise l2)"
                    .into(),
            ));
        }
        let l = s.sqrt();
        h[j * p + j] = l;
        for i in j + 1..p {
            let mut s = h[i * p + j];
            for k in 0..j {
                s -= h[i * p + k] * h[j * p + k];
            }
            h[i * p + j] = s / l;
        }
    }
    let mut z = vec![0.0; p];
    for i in 0..p {
        let mut s = g[i];
        for k in 0..i {
            s -= h[i * p + k] * z[k];
        }
        z[i] = s / h[i * p + i];
    }
    let mut out = vec![0.0; p];
    for i in (0..p).rev() {
        let mut s = z[i];
        for k in i + 1..p {
            s -= h[k * p + i] * out[k];
        }
        out[i] = s / h[i * p + i];
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::{Rng, SeedableRng};

    fn data(n: usize, seed: u64) -> (Vec<f64>, Vec<f32>) {
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(seed);
        let mut x = Vec::with_capacity(n * 3);
        let mut y = Vec::with_capacity(n);
        for _ in 0..n {
            let row: [f64; 3] = [rng.random(), rng.random(), rng.random()];
            let z = -0.5 + 2.0 * row[0] - 1.5 * row[1] + 0.2 * row[2];
            y.push(if rng.random::<f64>() < 1.0 / (1.0 + (-z).exp()) {
                1.0
            } else {
                0.0
            });
            x.extend(row);
        }
        (x, y)
    }

    /// At the optimum the gradient of the regularised objective vanishes (the condition
    /// scikit-learn's solvers also stop on); checked independently of the solver.
    #[test]
    fn the_gradient_vanishes_at_the_fit() {
        let (x, y) = data(2000, 1);
        for l2 in [0.0, 1.0, 50.0] {
            let f = fit(&x, 3, &y, l2, None, &mut |_, _| Ok(())).unwrap();
            let mut g = [0.0f64; 4];
            for r in 0..y.len() {
                let z = f.intercept + (0..3).map(|j| f.coef[j] * x[r * 3 + j]).sum::<f64>();
                let res = 1.0 / (1.0 + (-z).exp()) - f64::from(y[r]);
                for j in 0..3 {
                    g[j] += res * x[r * 3 + j];
                }
                g[3] += res;
            }
            for (gj, w) in g.iter_mut().zip(&f.coef) {
                *gj += l2 * w;
            }
            assert!(g.iter().all(|v| v.abs() < 1e-8), "l2 {l2}: {g:?}");
            assert!(f.iterations < 20);
        }
    }

    /// A column whose unconstrained coefficient is negative is held at 0, and the other
    /// weights are the optimum without it.
    #[test]
    fn a_nonnegative_column_is_held_at_zero() {
        let (x, y) = data(2000, 2);
        let free = fit(&x, 3, &y, 1.0, None, &mut |_, _| Ok(())).unwrap();
        assert!(free.coef[1] < 0.0);
        let held = fit(&x, 3, &y, 1.0, Some(1), &mut |_, _| Ok(())).unwrap();
        assert!(held.constrained);
        assert_eq!(held.coef[1], 0.0);
        let without: Vec<f64> = x.chunks(3).flat_map(|r| [r[0], 0.0, r[2]]).collect();
        let reference = fit(&without, 3, &y, 1.0, None, &mut |_, _| Ok(())).unwrap();
        assert!((held.coef[0] - reference.coef[0]).abs() < 1e-9);
        assert!((held.coef[2] - reference.coef[2]).abs() < 1e-9);
        // A positive coefficient is left alone.
        let kept = fit(&x, 3, &y, 1.0, Some(0), &mut |_, _| Ok(())).unwrap();
        assert!(!kept.constrained);
        assert_eq!(kept.coef, free.coef);
    }

    #[test]
    fn one_class_is_refused() {
        let x = vec![0.0, 1.0, 2.0];
        let e = fit(&x, 1, &[1.0, 1.0, 1.0], 1.0, None, &mut |_, _| Ok(())).unwrap_err();
        assert!(e.to_string().contains("one class"), "{e}");
    }
}
