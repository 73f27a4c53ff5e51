//! Qini and uplift curves and their normalised areas, as scikit-uplift defines them
//! (`sklift.metrics`), so that a score's ranking can be judged by the incremental
//! outcome it buys when only the top of the ranking is treated.
//!
//! Rows are sorted by score, highest first; the curve has one point per distinct score
//! (ties enter together), at n = the rows up to and including that score, and starts at
//! (0, 0). With n_t, n_c the treated and control rows so far and y_t, y_c their summed
//! outcomes:
//! - Qini: y_t − y_c · n_t / n_c (0 for the ratio while n_c = 0);
//! - uplift: (y_t / n_t − y_c / n_c) · n (each rate 0 while its count is 0).
//!
//! The area scores are (area − baseline) / (perfect − baseline) by the trapezoid rule, the
//! baseline being the straight line to the curve's last point and the perfect curve that
//! of the ideal ranking: for Qini (with negative effects) the score y·t − y·(1 − t); for
//! uplift 2·[y = t] + (y if the control responders outnumber the treated non-responders,
//! else t).

/// One row: the model's score, whether it was treated, its outcome.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Row {
    pub score: f64,
    pub treated: bool,
    pub outcome: f64,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Kind {
    Qini,
    Uplift,
}

/// A point of a curve: after the first `n` rows of the ranking, the curve's `value`.
#[derive(Debug, Clone, Copy, PartialEq)]
pub struct Point {
    pub n: f64,
    pub value: f64,
}

/// The curve of `rows` ranked by score (the rows are reordered).
pub fn curve(kind: Kind, rows: &mut [Row]) -> Vec<Point> {
    rows.sort_by(|a, b| b.score.total_cmp(&a.score));
    let mut points = vec![Point { n: 0.0, value: 0.0 }];
    let (mut n_t, mut n_c, mut y_t, mut y_c) = (0.0, 0.0, 0.0, 0.0);
    for (i, r) in rows.iter().enumerate() {
        if r.treated {
            n_t += 1.0;
            y_t += r.outcome;
        } else {
            n_c += 1.0;
            y_c += r.outcome;
        }
        // A point where the next row has another score (== groups 0.0 with -0.0).
        if rows.get(i + 1).is_some_and(|next| next.score == r.score) {
            continue;
        }
        let n = (i + 1) as f64;
        let ratio = |y: f64, count: f64| if count != 0.0 { y / count } else { 0.0 };
        let value = match kind {
            Kind::Qini => y_t - y_c * ratio(n_t, n_c),
            Kind::Uplift => (ratio(y_t, n_t) - ratio(y_c, n_c)) * n,
        };
        points.push(Point { n, value });
    }
    points
}

/// The area under a curve by the trapezoid rule.
pub fn area(points: &[Point]) -> f64 {
    points
        .windows(2)
        .map(|w| (w[1].n - w[0].n) * (w[0].value + w[1].value) / 2.0)
        .sum()
}

/// The normalised area of the ranking's curve between the random (0) and the perfect (1)
/// ranking; NaN when the rows have no treated or no control row, or the perfect curve is
/// the baseline. `negative_effect` (Qini only, scikit-uplift's default true) lets the
/// perfect ranking put the rows the treatment hurt last; without it the perfect curve
/// rises straight to the total effect.
pub fn auc_score(kind: Kind, rows: &[Row], negative_effect: bool) -> f64 {
    let treated = rows.iter().filter(|r| r.treated).count();
    if treated == 0 || treated == rows.len() {
        return f64::NAN;
    }
    let mut actual_rows = rows.to_vec();
    let actual = curve(kind, &mut actual_rows);
    let mut ideal: Vec<Row> = match kind {
        Kind::Qini => rows
            .iter()
            .map(|r| Row {
                score: if r.treated { r.outcome } else { -r.outcome },
                ..*r
            })
            .collect(),
        Kind::Uplift => {
            let control_responders = rows
                .iter()
                .filter(|r| !r.treated && r.outcome == 1.0)
                .count();
            let treated_non_responders = rows
                .iter()
                .filter(|r| r.treated && r.outcome == 0.0)
                .count();
            rows.iter()
                .map(|r| {
                    let t = if r.treated { 1.0 } else { 0.0 };
                    let summand = if control_responders > treated_non_responders {
                        r.outcome
                    } else {
                        t
                    };
                    Row {
                        score: 2.0 * ((r.outcome == t) as u8 as f64) + summand,
                        ..*r
                    }
                })
                .collect()
        }
    };
    let mut perfect = curve(kind, &mut ideal);
    if kind == Kind::Qini && !negative_effect {
        let end = perfect
            .last()
            .copied()
            .unwrap_or(Point { n: 0.0, value: 0.0 });
        perfect = vec![
            Point { n: 0.0, value: 0.0 },
            Point {
                n: end.value,
                value: end.value,
            },
            end,
        ];
    }
    let last = perfect
        .last()
        .copied()
        .unwrap_or(Point { n: 0.0, value: 0.0 });
    let baseline = last.n * last.value / 2.0;
    let span = area(&perfect) - baseline;
    if span == 0.0 {
        return f64::NAN;
    }
    (area(&actual) - baseline) / span
}

#[cfg(test)]
mod tests {
    use super::*;

    fn row(score: f64, treated: bool, outcome: f64) -> Row {
        Row {
            score,
            treated,
            outcome,
        }
    }

    /// A hand-computed case with a tie: scores 0.9 (t, 1), 0.5 (c, 0), 0.5 (t, 1), 0.1 (c, 1).
    #[test]
    fn curves_by_hand() {
        let rows = [
            row(0.5, false, 0.0),
            row(0.9, true, 1.0),
            row(0.1, false, 1.0),
            row(0.5, true, 1.0),
        ];
        let q = curve(Kind::Qini, &mut rows.clone());
        // After 0.9: y_t 1, n_c 0 → 1. After the tie: y_t 2, n_t 2, y_c 0 → 2.
        // After 0.1: y_t 2 − y_c 1 · 2/2 = 1.
        let expected = [(0.0, 0.0), (1.0, 1.0), (3.0, 2.0), (4.0, 1.0)];
        let got: Vec<(f64, f64)> = q.iter().map(|p| (p.n, p.value)).collect();
        assert_eq!(got, expected);
        let u = curve(Kind::Uplift, &mut rows.clone());
        // (1/1 − 0)·1 = 1; (2/2 − 0/1)·3 = 3; (2/2 − 1/2)·4 = 2.
        let got: Vec<(f64, f64)> = u.iter().map(|p| (p.n, p.value)).collect();
        assert_eq!(got, [(0.0, 0.0), (1.0, 1.0), (3.0, 3.0), (4.0, 2.0)]);
        // Trapezoids: 0.5 + 3 + 1.5 = 5 for the Qini curve.
        assert_eq!(area(&q), 5.0);
    }

    /// The perfect ranking scores 1 and its reverse scores below 0; one arm only is NaN.
    #[test]
    fn scores_are_normalised() {
        let rows: Vec<Row> = (0..40)
            .map(|i| row(0.0, i % 2 == 0, ((i % 3) == 0) as u8 as f64))
            .collect();
        let ideal: Vec<Row> = rows
            .iter()
            .map(|r| Row {
                score: if r.treated { r.outcome } else { -r.outcome },
                ..*r
            })
            .collect();
        assert!((auc_score(Kind::Qini, &ideal, true) - 1.0).abs() < 1e-12);
        let reverse: Vec<Row> = ideal
            .iter()
            .map(|r| Row {
                score: -r.score,
                ..*r
            })
            .collect();
        assert!(auc_score(Kind::Qini, &reverse, true) < 0.0);
        // All scores tied: the curve is the straight line, the score 0.
        assert!(auc_score(Kind::Qini, &rows, true).abs() < 1e-12);
        let treated_only: Vec<Row> = rows
            .iter()
            .map(|r| Row {
                treated: true,
                ..*r
            })
            .collect();
        assert!(auc_score(Kind::Uplift, &treated_only, true).is_nan());
    }
}
