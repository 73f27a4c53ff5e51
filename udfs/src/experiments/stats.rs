//! The statistics behind the experiment functions, on summaries (count, mean, variance)
//! rather than rows, so that they serve the aggregates, the pre-aggregated
//! `ttest_from_stats` and the tests alike.
//!
//! Distributions come from `statrs` (its regularised incomplete beta and gamma) and `libm`
//! (erfc, which statrs computes only to about 1e-11);
//! quantiles are polished with Newton steps on the CDF, because its inverse incomplete beta
//! is only good to about 1e-9 for the large degrees of freedom experiments have, and the
//! intervals are compared with scipy to 1e-9.

use statrs::distribution::{ContinuousCDF, Normal, StudentsT};

/// Count, mean and variance (ddof = 1) of one variant's values.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Summary {
    pub n: f64,
    pub mean: f64,
    pub variance: f64,
}

impl Summary {
    /// From the (sum, sum of squares, count) that experiment tables often keep.
    pub fn from_sums(sum: f64, sum_squares: f64, n: f64) -> Summary {
        let mean = sum / n;
        let variance = if n > 1.0 {
            ((sum_squares - sum * sum / n) / (n - 1.0)).max(0.0)
        } else {
            f64::NAN
        };
        Summary { n, mean, variance }
    }
}

/// One estimate with its test: the statistic is `estimate / se`; `df` is `None` for a
/// normal reference distribution.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Estimate {
    pub estimate: f64,
    pub se: f64,
    pub statistic: f64,
    pub df: Option<f64>,
    pub p_value: f64,
    pub ci_low: f64,
    pub ci_high: f64,
}

impl Estimate {
    /// The two-sided test and the 1 − α interval of `estimate` with standard error `se`.
    /// A zero or undefined `se` leaves statistic, p-value and interval NaN (NULL in SQL).
    pub fn new(estimate: f64, se: f64, df: Option<f64>, alpha: f64) -> Estimate {
        if !(se > 0.0 && se.is_finite() && estimate.is_finite()) {
            return Estimate {
                estimate,
                se,
                statistic: f64::NAN,
                df,
                p_value: f64::NAN,
                ci_low: f64::NAN,
                ci_high: f64::NAN,
            };
        }
        let statistic = estimate / se;
        let (p_value, q) = match df {
            Some(df) => (
                2.0 * t_sf(statistic.abs(), df),
                t_quantile(1.0 - alpha / 2.0, df),
            ),
            None => (
                2.0 * normal_sf(statistic.abs()),
                normal_quantile(1.0 - alpha / 2.0),
            ),
        };
        Estimate {
            estimate,
            se,
            statistic,
            df,
            p_value,
            ci_low: estimate - q * se,
            ci_high: estimate + q * se,
        }
    }
}

/// Welch's two-sample t-test of treatment − control, and the relative effect
/// treatment / control − 1 by the delta method, tested against the same Welch–Satterthwaite
/// degrees of freedom (GrowthBook's frequentist engine does the same). The relative effect
/// is `None` when the control mean is 0.
pub fn welch(control: Summary, treatment: Summary, alpha: f64) -> (Estimate, Option<Estimate>) {
    let (c, t) = (control, treatment);
    let vc = c.variance / c.n;
    let vt = t.variance / t.n;
    let se = (vc + vt).sqrt();
    let df = (vc + vt).powi(2) / (vc * vc / (c.n - 1.0) + vt * vt / (t.n - 1.0));
    let absolute = Estimate::new(t.mean - c.mean, se, Some(df), alpha);
    let relative = (c.mean != 0.0).then(|| {
        let var = vt / (c.mean * c.mean) + t.mean * t.mean * vc / c.mean.powi(4);
        Estimate::new(t.mean / c.mean - 1.0, var.sqrt(), Some(df), alpha)
    });
    (absolute, relative)
}

/// Two proportions, `xc` of `nc` converted in control and `xt` of `nt` in treatment.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Proportions {
    /// The rate difference: z and p-value from the pooled standard error (the classical
    /// two-proportion z-test, statsmodels' `proportions_ztest`), interval from the unpooled
    /// one (Wald, statsmodels' `confint_proportions_2indep(method='wald')`).
    pub absolute: Estimate,
    /// pt / pc − 1 by the delta method with the unpooled variances, normal reference;
    /// `None` when the control rate is 0.
    pub relative: Option<Estimate>,
}

pub fn two_proportions(xc: f64, nc: f64, xt: f64, nt: f64, alpha: f64) -> Proportions {
    let (pc, pt) = (xc / nc, xt / nt);
    let diff = pt - pc;
    let pooled = (xc + xt) / (nc + nt);
    let se_pooled = (pooled * (1.0 - pooled) * (1.0 / nc + 1.0 / nt)).sqrt();
    let vc = pc * (1.0 - pc) / nc;
    let vt = pt * (1.0 - pt) / nt;
    let tested = Estimate::new(diff, se_pooled, None, alpha);
    let interval = Estimate::new(diff, (vc + vt).sqrt(), None, alpha);
    let absolute = Estimate {
        ci_low: interval.ci_low,
        ci_high: interval.ci_high,
        ..tested
    };
    let relative = (pc > 0.0).then(|| {
        let var = vt / (pc * pc) + pt * pt * vc / pc.powi(4);
        Estimate::new(pt / pc - 1.0, var.sqrt(), None, alpha)
    });
    Proportions { absolute, relative }
}

/// Pearson's chi-square goodness of fit of `observed` counts to `expected` shares (scaled
/// to the observed total): (statistic, degrees of freedom, p-value), as
/// `scipy.stats.chisquare`. The shares must be positive.
pub fn chi_square(observed: &[f64], shares: &[f64]) -> (f64, f64, f64) {
    let total: f64 = observed.iter().sum();
    let share_total: f64 = shares.iter().sum();
    let statistic: f64 = observed
        .iter()
        .zip(shares)
        .map(|(o, s)| {
            let e = total * s / share_total;
            (o - e) * (o - e) / e
        })
        .sum();
    let df = observed.len() as f64 - 1.0;
    (statistic, df, chi_square_sf(statistic, df))
}

/// The mixing parameter ρ of the two-sided asymptotic confidence sequence for a tuning
/// parameter `n_tune` (Waudby-Smith et al., eq. 161): the sequence is tightest around
/// `n_tune` observations.
pub fn sequential_rho(alpha: f64, n_tune: f64) -> f64 {
    let l = -2.0 * alpha.ln();
    ((l + (l + 1.0).ln()) / n_tune).sqrt()
}

/// An always-valid test of `estimate` with standard error `se` after `n` observations in
/// all (Waudby-Smith et al., asymptotic confidence sequence, eqs. 9 and 155): the interval
/// holds simultaneously over every look with probability 1 − α, and the p-value is the
/// reciprocal of the e-value, capped at 1.
pub fn sequential(estimate: f64, se: f64, n: f64, alpha: f64, n_tune: f64) -> Estimate {
    if !(se > 0.0 && se.is_finite() && estimate.is_finite() && n >= 1.0) {
        return Estimate::new(estimate, f64::NAN, None, alpha);
    }
    let rho = sequential_rho(alpha, n_tune);
    let s2 = se * se * n;
    let a = n * rho * rho + 1.0;
    let half = (s2 * 2.0 * a * (a.sqrt() / alpha).ln() / (n * rho).powi(2)).sqrt();
    let t2 = estimate * estimate / (se * se);
    let log_e = rho * rho * n * t2 / (2.0 * a) - 0.5 * a.ln();
    Estimate {
        estimate,
        se,
        statistic: estimate / se,
        df: None,
        p_value: if log_e <= 0.0 { 1.0 } else { (-log_e).exp() },
        ci_low: estimate - half,
        ci_high: estimate + half,
    }
}

/// Beta posteriors of two conversion rates: the chance that treatment's rate is higher, and
/// the expected loss (the conversion rate given up, in expectation) of choosing treatment
/// and of choosing control.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct BetaComparison {
    pub chance_to_win: f64,
    pub risk_treatment: f64,
    pub risk_control: f64,
}

/// `control` and `treatment` are the posteriors' (α, β). Integrates over treatment's
/// posterior with Simpson's rule on ±40 standard deviations (clipped to [0, 1]), using
/// P(pc < t) = I_t(αc, βc) and E[(pc − t)⁺] = μc·(1 − I_t(αc + 1, βc)) − t·(1 − I_t(αc, βc)).
pub fn beta_comparison(control: (f64, f64), treatment: (f64, f64)) -> BetaComparison {
    let (ac, bc) = control;
    let (at, bt) = treatment;
    let mean_c = ac / (ac + bc);
    let mean_t = at / (at + bt);
    let sd_t = (at * bt / ((at + bt).powi(2) * (at + bt + 1.0))).sqrt();
    let lo = (mean_t - 40.0 * sd_t).max(0.0);
    let hi = (mean_t + 40.0 * sd_t).min(1.0);
    const STEPS: usize = 4000;
    let h = (hi - lo) / STEPS as f64;
    let ln_norm = statrs::function::beta::checked_ln_beta(at, bt).unwrap_or(f64::NAN);
    let density = |x: f64| {
        if x <= 0.0 || x >= 1.0 {
            // The ends carry no mass unless a shape is below 1, where Simpson's rule would
            // need the singular value; the neighbouring interior points carry it instead.
            return 0.0;
        }
        ((at - 1.0) * x.ln() + (bt - 1.0) * (1.0 - x).ln() - ln_norm).exp()
    };
    let (mut win, mut loss_t, mut mass) = (0.0, 0.0, 0.0);
    for i in 0..=STEPS {
        let x = lo + h * i as f64;
        let w = if i == 0 || i == STEPS {
            1.0
        } else if i % 2 == 1 {
            4.0
        } else {
            2.0
        };
        let f = w * density(x);
        if f == 0.0 {
            continue;
        }
        let below = beta_reg(ac, bc, x);
        win += f * below;
        loss_t += f * (mean_c * (1.0 - beta_reg(ac + 1.0, bc, x)) - x * (1.0 - below));
        mass += f;
    }
    // Normalising by the integrated mass removes the rule's error in the density's total.
    let chance_to_win = win / mass;
    let risk_treatment = (loss_t / mass).max(0.0);
    // E[(pt − pc)⁺] − E[(pc − pt)⁺] = μt − μc.
    let risk_control = (risk_treatment + mean_t - mean_c).max(0.0);
    BetaComparison {
        chance_to_win,
        risk_treatment,
        risk_control,
    }
}

/// statrs's regularised incomplete beta, NaN where its arguments are out of its domain
/// (a NaN or infinite statistic): the unchecked one panics there, failing the statement.
fn beta_reg(a: f64, b: f64, x: f64) -> f64 {
    statrs::function::beta::checked_beta_reg(a, b, x).unwrap_or(f64::NAN)
}

fn t_sf(x: f64, df: f64) -> f64 {
    // sf(x) = ½ I_{df/(df+x²)}(df/2, ½) for x ≥ 0: accurate far into the tail, where
    // 1 − cdf would round to 0.
    0.5 * beta_reg(df / 2.0, 0.5, df / (df + x * x))
}

fn normal_sf(x: f64) -> f64 {
    0.5 * libm::erfc(x / std::f64::consts::SQRT_2)
}

fn chi_square_sf(x: f64, df: f64) -> f64 {
    if x <= 0.0 {
        return 1.0;
    }
    statrs::function::gamma::checked_gamma_ur(df / 2.0, x / 2.0).unwrap_or(f64::NAN)
}

/// The p-quantile of Student's t (p ≥ ½), polished by Newton steps on the CDF.
fn t_quantile(p: f64, df: f64) -> f64 {
    let Ok(dist) = StudentsT::new(0.0, 1.0, df) else {
        return f64::NAN;
    };
    let mut x = dist.inverse_cdf(p);
    for _ in 0..4 {
        let pdf = statrs::distribution::Continuous::pdf(&dist, x);
        if pdf.is_nan() || pdf <= 0.0 {
            break;
        }
        let step = ((1.0 - p) - t_sf(x, df)) / pdf;
        x -= step;
        if step.abs() <= 1e-15 * x.abs() {
            break;
        }
    }
    x
}

/// The p-quantile of the standard normal (p ≥ ½), polished by Newton steps on the CDF.
fn normal_quantile(p: f64) -> f64 {
    let dist = Normal::standard();
    let mut x = dist.inverse_cdf(p);
    for _ in 0..4 {
        let pdf = statrs::distribution::Continuous::pdf(&dist, x);
        if pdf.is_nan() || pdf <= 0.0 {
            break;
        }
        let step = ((1.0 - p) - normal_sf(x)) / pdf;
        x -= step;
        if step.abs() <= 1e-15 * x.abs() {
            break;
        }
    }
    x
}

#[cfg(test)]
mod tests {
    use super::*;

    fn close(a: f64, b: f64, tol: f64) -> bool {
        (a - b).abs() <= tol * b.abs().max(1e-300)
    }

    /// GrowthBook's published test vector (gbstats' frequentist tests), data as
    /// (sum, sum of squares, n); 5 decimals as published.
    #[test]
    fn welch_reproduces_the_growthbook_vector() {
        let c = Summary::from_sums(1396.87, 52377.9767, 3407.0);
        let t = Summary::from_sums(2422.7, 134698.29, 3461.0);
        let (abs, rel) = welch(c, t, 0.05);
        let rel = rel.expect("control mean is not 0");
        let r5 = |x: f64| (x * 1e5).round() / 1e5;
        assert_eq!(r5(abs.estimate), 0.29);
        assert_eq!((r5(abs.ci_low), r5(abs.ci_high)), (0.04538, 0.53462));
        assert_eq!(r5(abs.p_value), 0.02016);
        assert_eq!(r5(rel.estimate), 0.70732);
        assert_eq!((r5(rel.ci_low), r5(rel.ci_high)), (-0.03526, 1.44989));
        assert_eq!(r5(rel.p_value), 0.06191);
        // scipy.stats.t with the Welch df (printed by numpy to 17 digits): 1e-12 relative.
        assert!(close(abs.df.unwrap(), 5841.742032093565, 1e-12));
        assert!(close(abs.p_value, 0.020158402643586978, 1e-10));
        assert!(close(abs.ci_low, 0.04537789255929012, 1e-10));
        assert!(close(rel.ci_high, 1.449894235407581, 1e-10));
    }

    /// Tail probabilities against scipy.stats (t.sf, norm.sf), 1e-10 relative.
    #[test]
    fn tails_match_scipy() {
        for (x, df, p) in [
            (2.5, 10.0, 0.01572342211830441),
            (1.0, 5841.74, 0.15867596354614152),
            (8.0, 30000.0, 6.443470672712741e-16),
            (0.3, 3.5, 0.3905667049199448),
        ] {
            assert!(
                close(t_sf(x, df), p, 1e-10),
                "t({df}).sf({x}) = {}",
                t_sf(x, df)
            );
        }
        assert!(close(normal_sf(1.959963984540054), 0.025, 1e-14));
        assert!(close(normal_sf(9.0), 1.1285884059538324e-19, 1e-13));
    }

    /// Statistics out of the distributions' domain (NaN, a negative degree of freedom) give
    /// NaN, not a panic (the SQL fuzzer's `sequential_test` over `power(x, x)`).
    #[test]
    fn tails_outside_the_domain_are_nan() {
        assert!(t_sf(f64::NAN, 10.0).is_nan());
        assert!(t_sf(1.0, f64::NAN).is_nan());
        assert!(t_sf(1.0, -3.0).is_nan());
        assert!(chi_square_sf(1.0, -1.0).is_nan());
        assert!(
            beta_comparison((0.0, 1.0), (-1.0, 2.0))
                .chance_to_win
                .is_nan()
        );
    }

    /// Quantiles against scipy.stats (t.ppf, norm.ppf), 1e-12 relative.
    #[test]
    fn quantiles_match_scipy() {
        assert!(close(normal_quantile(0.975), 1.959963984540054, 1e-13));
        assert!(close(normal_quantile(0.995), 2.5758293035489004, 1e-13));
        assert!(close(t_quantile(0.975, 10.0), 2.228138851986274, 1e-12));
        assert!(close(
            t_quantile(0.975, 5841.742032093565),
            1.9603701569544807,
            1e-12
        ));
        assert!(close(t_quantile(0.9995, 3.5), 10.20482863165621, 1e-11));
    }

    /// scipy.stats.chisquare([480, 520], [0.5, 0.5]) and ([30, 50, 20], [1, 2, 1]).
    #[test]
    fn chi_square_matches_scipy() {
        let (x, df, p) = chi_square(&[480.0, 520.0], &[0.5, 0.5]);
        assert!(close(x, 1.6, 1e-14) && df == 1.0);
        assert!(close(p, 0.20590321073206466, 1e-12));
        let (x, df, p) = chi_square(&[30.0, 50.0, 20.0], &[1.0, 2.0, 1.0]);
        assert!(close(x, 2.0, 1e-14) && df == 2.0);
        assert!(close(p, 0.36787944117144245, 1e-12));
    }

    /// Pooled z and unpooled Wald interval, as statsmodels' proportions_ztest and
    /// confint_proportions_2indep(method='wald') on 120/1000 vs 150/1000.
    #[test]
    fn two_proportions_match_statsmodels() {
        let r = two_proportions(120.0, 1000.0, 150.0, 1000.0, 0.05);
        assert!(close(r.absolute.estimate, 0.03, 1e-12));
        assert!(close(r.absolute.statistic, 1.963049807622355, 1e-12));
        assert!(close(r.absolute.p_value, 0.04964038686536878, 1e-10));
        assert!(close(r.absolute.ci_low, 7.60288212977786e-05, 1e-9));
        assert!(close(r.absolute.ci_high, 0.05992397117870222, 1e-12));
        assert!(close(r.relative.unwrap().estimate, 0.25, 1e-12));
    }

    /// The confidence sequence is wider than the fixed-horizon interval and its p-value
    /// larger; both equal numpy's evaluation of the published formulas.
    #[test]
    fn sequential_is_wider_than_fixed_horizon() {
        let fixed = Estimate::new(0.1, 0.04, None, 0.05);
        let seq = sequential(0.1, 0.04, 2000.0, 0.05, 5000.0);
        assert!(seq.ci_high - seq.ci_low > fixed.ci_high - fixed.ci_low);
        assert!(seq.p_value > fixed.p_value);
        // numpy on gbstats' formulas (sequential_interval_halfwidth, sequential_p_value).
        assert!(close(seq.ci_high - 0.1, 0.12495116366698919, 1e-12));
        assert!(close(seq.p_value, 0.1897765813390542, 1e-12));
    }

    /// Closed form for integer shapes (Evan Miller): P(pt > pc) =
    /// Σ_{i<αt} B(αc+i, βc+βt) / ((βt+i) B(1+i, βt) B(αc, βc)).
    #[test]
    fn chance_to_win_matches_the_closed_form() {
        use statrs::function::beta::ln_beta;
        for (c, t) in [
            ((11.0, 91.0), (16.0, 86.0)),
            ((3.0, 5.0), (2.0, 9.0)),
            ((121.0, 881.0), (151.0, 851.0)),
        ] {
            let (ac, bc) = c;
            let (at, bt) = t;
            let exact: f64 = (0..at as usize)
                .map(|i| {
                    let i = i as f64;
                    (ln_beta(ac + i, bc + bt)
                        - (bt + i).ln()
                        - ln_beta(1.0 + i, bt)
                        - ln_beta(ac, bc))
                    .exp()
                })
                .sum();
            let got = beta_comparison(c, t).chance_to_win;
            assert!(close(got, exact, 1e-8), "{c:?} {t:?}: {got} vs {exact}");
        }
    }

    /// Peeking at an A/A test 50 times: the always-valid p-value keeps the share of runs
    /// ever declared significant at or below α, while Welch's fixed-horizon p-value, peeked
    /// at the same way, exceeds it (2,000 seeded runs of 50 looks, 100 rows per arm between
    /// looks; the tuning parameter at its default 5,000).
    #[test]
    fn peeking_keeps_the_sequential_false_positive_rate_below_alpha() {
        use rand::SeedableRng;
        use rand_distr::{Distribution, StandardNormal};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(7);
        let (runs, looks, step, alpha) = (2000, 50, 100, 0.05);
        let (mut sequential_hits, mut fixed_hits) = (0, 0);
        for _ in 0..runs {
            let mut arms = [(0.0f64, 0.0f64, 0.0f64); 2];
            let (mut seq_hit, mut fixed_hit) = (false, false);
            for _ in 0..looks {
                for arm in arms.iter_mut() {
                    for _ in 0..step {
                        let y: f64 = StandardNormal.sample(&mut rng);
                        *arm = (arm.0 + y, arm.1 + y * y, arm.2 + 1.0);
                    }
                }
                let c = Summary::from_sums(arms[0].0, arms[0].1, arms[0].2);
                let t = Summary::from_sums(arms[1].0, arms[1].1, arms[1].2);
                let (abs, _) = welch(c, t, alpha);
                fixed_hit |= abs.p_value < alpha;
                let s = sequential(abs.estimate, abs.se, c.n + t.n, alpha, 5000.0);
                seq_hit |= s.p_value < alpha;
                // The interval and the p-value tell the same story.
                assert_eq!(s.p_value < alpha, s.ci_low > 0.0 || s.ci_high < 0.0);
            }
            sequential_hits += seq_hit as usize;
            fixed_hits += fixed_hit as usize;
        }
        let sequential_rate = sequential_hits as f64 / runs as f64;
        let fixed_rate = fixed_hits as f64 / runs as f64;
        assert!(sequential_rate <= alpha, "sequential: {sequential_rate}");
        assert!(
            fixed_rate > 2.0 * alpha,
            "fixed horizon peeked: {fixed_rate}"
        );
        println!("A/A with 50 looks: sequential {sequential_rate}, fixed-horizon {fixed_rate}");
    }

    /// Chance to win and risks against a seeded Monte Carlo of 10^6 posterior draws,
    /// within 4 Monte Carlo standard errors.
    #[test]
    fn beta_comparison_matches_monte_carlo() {
        use rand::SeedableRng;
        use rand_distr::{Beta, Distribution};
        let mut rng = rand_chacha::ChaCha8Rng::seed_from_u64(11);
        for (c, t) in [((121.0, 881.0), (151.0, 851.0)), ((2.5, 40.0), (1.5, 30.0))] {
            let bc = Beta::new(c.0, c.1).unwrap();
            let bt = Beta::new(t.0, t.1).unwrap();
            let n = 1_000_000;
            let (mut win, mut loss_t, mut loss_t2) = (0.0, 0.0, 0.0);
            for _ in 0..n {
                let (pc, pt): (f64, f64) = (bc.sample(&mut rng), bt.sample(&mut rng));
                win += (pt > pc) as u8 as f64;
                let l = (pc - pt).max(0.0);
                loss_t += l;
                loss_t2 += l * l;
            }
            let nf = n as f64;
            let (win, loss_t) = (win / nf, loss_t / nf);
            let loss_sd = (loss_t2 / nf - loss_t * loss_t).sqrt();
            let r = beta_comparison(c, t);
            assert!((r.chance_to_win - win).abs() <= 4.0 * (win * (1.0 - win) / nf).sqrt());
            assert!((r.risk_treatment - loss_t).abs() <= 4.0 * loss_sd / nf.sqrt());
        }
    }
}
