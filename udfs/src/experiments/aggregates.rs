//! The experiment aggregates as DataFusion functions: arguments, partial states and the
//! structs they return. The statistics themselves are in [`super::stats`].

use std::collections::BTreeMap;
use std::sync::Arc;

use datafusion::arrow::array::{Array, ArrayRef, AsArray, StructArray};
use datafusion::arrow::datatypes::{DataType, Field, FieldRef, Fields, Float64Type};
use datafusion::common::ScalarValue;
use datafusion::common::utils::SingleRowListArrayBuilder;
use datafusion::error::Result;
use datafusion::logical_expr::function::{AccumulatorArgs, StateFieldsArgs};
use datafusion::logical_expr::{Accumulator, AggregateUDF, AggregateUDFImpl, Signature};

use super::moments::{Moments, WIDTH};
use super::stats::{self, Estimate};
use crate::aggregate_state::{
    check_arity, constant_arg, list_of, list_state, list_states, named_signature, option_number,
    option_text, required_columns,
};
use crate::error::{FunctionError, row_error, user_error};

/// More variants than this in one group means the wrong column was passed as `variant`
/// (a user id); the state would grow with the table.
const MAX_VARIANTS: usize = 1000;

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
pub enum Test {
    AbTest,
    TTest,
    CupedTTest,
    Sequential,
    BayesAb,
    Srm,
    Cuped,
}

const ALL: [Test; 7] = [
    Test::AbTest,
    Test::TTest,
    Test::CupedTTest,
    Test::Sequential,
    Test::BayesAb,
    Test::Srm,
    Test::Cuped,
];

/// What a parameter is, which fixes the type its argument is coerced to.
#[derive(Debug, Clone, Copy, PartialEq)]
pub(super) enum Param {
    /// The variant column, compared as text.
    Variant,
    /// A numeric column (the metric, a 0/1 conversion, a covariate).
    Number,
    /// A constant text option (`control`).
    Text,
    /// A constant numeric option (`alpha`, `tuning`, priors).
    Option,
    /// A constant array of text (`srm_test`'s variants).
    TextList,
    /// A constant array of numbers (`srm_test`'s shares).
    NumberList,
}

impl Test {
    /// The test a function name calls.
    pub(super) fn named(function: &str) -> Option<Test> {
        ALL.into_iter().find(|t| t.name() == function)
    }

    fn name(self) -> &'static str {
        match self {
            Test::AbTest => "ab_test",
            Test::TTest => "ttest",
            Test::CupedTTest => "cuped_ttest",
            Test::Sequential => "sequential_test",
            Test::BayesAb => "bayes_ab",
            Test::Srm => "srm_test",
            Test::Cuped => "cuped",
        }
    }

    /// Parameter names in order (for `name => value` arguments) and what each is.
    pub(super) fn params(self) -> &'static [(&'static str, Param)] {
        use Param::*;
        match self {
            Test::AbTest => &[
                ("variant", Variant),
                ("converted", Number),
                ("control", Text),
                ("alpha", Option),
            ],
            Test::TTest => &[
                ("variant", Variant),
                ("value", Number),
                ("control", Text),
                ("alpha", Option),
            ],
            Test::CupedTTest => &[
                ("variant", Variant),
                ("value", Number),
                ("covariate", Number),
                ("control", Text),
                ("alpha", Option),
            ],
            Test::Sequential => &[
                ("variant", Variant),
                ("value", Number),
                ("control", Text),
                ("alpha", Option),
                ("tuning", Option),
            ],
            Test::BayesAb => &[
                ("variant", Variant),
                ("converted", Number),
                ("control", Text),
                ("prior_alpha", Option),
                ("prior_beta", Option),
            ],
            Test::Srm => &[
                ("variant", Variant),
                ("variants", TextList),
                ("shares", NumberList),
            ],
            Test::Cuped => &[("value", Number), ("covariate", Number)],
        }
    }

    /// How many leading parameters are row columns (the rest are constant options).
    fn columns(self) -> usize {
        self.params()
            .iter()
            .take_while(|(_, p)| matches!(p, Param::Variant | Param::Number))
            .count()
    }

    /// Whether the value is a conversion that must be 0 or 1.
    fn binary(self) -> bool {
        matches!(self, Test::AbTest | Test::BayesAb)
    }

    /// Whether the result is one struct per non-control variant (a list) or one struct.
    fn per_variant(self) -> bool {
        !matches!(self, Test::Srm | Test::Cuped)
    }

    /// The fields of the struct this test reports (one per variant for the list kinds).
    pub(super) fn fields(self) -> Fields {
        use DataType::{Float64 as F, Int64 as I, Utf8 as T};
        let head = [
            ("variant", T),
            ("control", T),
            ("n_control", I),
            ("n_treatment", I),
        ];
        let conversions = [
            ("conversions_control", I),
            ("conversions_treatment", I),
            ("rate_control", F),
            ("rate_treatment", F),
        ];
        let means = [
            ("mean_control", F),
            ("mean_treatment", F),
            ("variance_control", F),
            ("variance_treatment", F),
        ];
        let relative = [
            ("relative_effect", F),
            ("relative_low", F),
            ("relative_high", F),
            ("relative_p_value", F),
        ];
        let effect = [("effect", F), ("effect_low", F), ("effect_high", F)];
        let list = list_of;
        let spec: Vec<(&str, DataType)> = match self {
            Test::AbTest => head
                .into_iter()
                .chain(conversions)
                .chain([
                    ("lift", F),
                    ("lift_low", F),
                    ("lift_high", F),
                    ("z", F),
                    ("p_value", F),
                    ("relative_lift", F),
                    ("relative_low", F),
                    ("relative_high", F),
                    ("relative_p_value", F),
                ])
                .collect(),
            Test::TTest | Test::CupedTTest => head
                .into_iter()
                .chain(means)
                .chain(effect)
                .chain([("t", F), ("df", F), ("p_value", F)])
                .chain(relative)
                .chain(if self == Test::CupedTTest {
                    vec![("theta", F), ("variance_reduction", F)]
                } else {
                    vec![]
                })
                .collect(),
            Test::Sequential => head
                .into_iter()
                .chain(means)
                .chain(effect)
                .chain([("p_value", F)])
                .chain(relative)
                .collect(),
            Test::BayesAb => head
                .into_iter()
                .chain(conversions)
                .chain([
                    ("chance_to_win", F),
                    ("risk_treatment", F),
                    ("risk_control", F),
                ])
                .collect(),
            Test::Srm => vec![
                ("variants", list(T)),
                ("observed", list(I)),
                ("expected", list(F)),
                ("chi2", F),
                ("df", I),
                ("p_value", F),
            ],
            Test::Cuped => vec![
                ("n", I),
                ("theta", F),
                ("mean", F),
                ("mean_covariate", F),
                ("variance", F),
                ("variance_adjusted", F),
                ("variance_reduction", F),
            ],
        };
        spec.into_iter()
            .map(|(n, t)| Field::new(n, t, true))
            .collect()
    }

    fn return_type(self) -> DataType {
        let item = DataType::Struct(self.fields());
        if self.per_variant() {
            list_of(item)
        } else {
            item
        }
    }
}

/// Every experiment aggregate.
pub fn all() -> Vec<AggregateUDF> {
    ALL.into_iter()
        .map(|t| AggregateUDF::from(ExperimentUdaf::new(t)))
        .collect()
}

#[derive(Debug, PartialEq, Eq, Hash)]
pub struct ExperimentUdaf {
    test: Test,
    signature: Signature,
}

impl ExperimentUdaf {
    pub fn new(test: Test) -> ExperimentUdaf {
        let names: Vec<&str> = test.params().iter().map(|(n, _)| *n).collect();
        let signature = named_signature(&names);
        ExperimentUdaf { test, signature }
    }
}

impl AggregateUDFImpl for ExperimentUdaf {
    fn name(&self) -> &str {
        self.test.name()
    }

    fn signature(&self) -> &Signature {
        &self.signature
    }

    fn coerce_types(&self, arg_types: &[DataType]) -> Result<Vec<DataType>> {
        let params = self.test.params();
        let required = self.test.columns();
        let names: Vec<&str> = params.iter().map(|(n, _)| *n).collect();
        check_arity(self.test.name(), &names, required, arg_types.len())?;
        Ok(params
            .iter()
            .zip(arg_types)
            .map(|((_, p), _)| match p {
                Param::Variant | Param::Text => DataType::Utf8,
                Param::Number | Param::Option => DataType::Float64,
                Param::TextList => list_of(DataType::Utf8),
                Param::NumberList => list_of(DataType::Float64),
            })
            .collect())
    }

    fn return_type(&self, _arg_types: &[DataType]) -> Result<DataType> {
        Ok(self.test.return_type())
    }

    fn accumulator(&self, args: AccumulatorArgs) -> Result<Box<dyn Accumulator>> {
        let columns: Vec<&str> = self.test.params()[..self.test.columns()]
            .iter()
            .map(|(n, _)| *n)
            .collect();
        required_columns(&args, self.test.name(), &columns)?;
        Ok(Box::new(ExperimentAccumulator {
            test: self.test,
            options: Options::read(self.test, &args)?,
            cells: BTreeMap::new(),
        }))
    }

    fn state_fields(&self, args: StateFieldsArgs) -> Result<Vec<FieldRef>> {
        // The variants seen, and WIDTH moments per variant in the same order.
        Ok(vec![
            Arc::new(Field::new(
                format!("{}[variants]", args.name),
                list_of(DataType::Utf8),
                true,
            )),
            Arc::new(Field::new(
                format!("{}[moments]", args.name),
                list_of(DataType::Float64),
                true,
            )),
        ])
    }
}

/// The constant options of one call, checked once.
#[derive(Debug)]
struct Options {
    control: Option<String>,
    alpha: f64,
    tuning: f64,
    prior: (f64, f64),
    /// `srm_test`'s expected variants and their shares.
    expected: Option<(Vec<String>, Vec<f64>)>,
}

impl Options {
    fn read(test: Test, args: &AccumulatorArgs) -> Result<Options> {
        let name = test.name();
        let mut options = Options {
            control: None,
            alpha: 0.05,
            tuning: 5000.0,
            prior: (1.0, 1.0),
            expected: None,
        };
        let mut variants: Option<Vec<String>> = None;
        let mut shares: Option<Vec<f64>> = None;
        for (i, (param, kind)) in test.params().iter().enumerate().skip(test.columns()) {
            let Some(value) = constant_arg(args, i, name, param)? else {
                continue;
            };
            match kind {
                Param::Text => options.control = Some(option_text(&value)),
                Param::Option => {
                    let v = option_number(&value);
                    let ok = match *param {
                        "alpha" => v > 0.0 && v < 1.0,
                        _ => v > 0.0 && v.is_finite(),
                    };
                    if !ok {
                        let range = if *param == "alpha" {
                            "between 0 and 1 (exclusive)"
                        } else {
                            "positive"
                        };
                        return Err(user_error(format!(
                            "{name}: {param} must be {range}, got {value}"
                        )));
                    }
                    match *param {
                        "alpha" => options.alpha = v,
                        "tuning" => options.tuning = v,
                        "prior_alpha" => options.prior.0 = v,
                        _ => options.prior.1 = v,
                    }
                }
                Param::TextList => variants = Some(list_values(&value, option_text)),
                Param::NumberList => shares = Some(list_values(&value, option_number)),
                Param::Variant | Param::Number => {}
            }
        }
        options.expected = match (variants, shares) {
            (None, None) => None,
            (Some(v), None) => {
                let n = v.len();
                Some((v, vec![1.0; n]))
            }
            (Some(v), Some(s)) => {
                if v.len() != s.len() {
                    return Err(user_error(format!(
                        "{name}: {} variants but {} shares",
                        v.len(),
                        s.len()
                    )));
                }
                if s.iter().any(|x| !(*x > 0.0 && x.is_finite())) {
                    return Err(user_error(format!("{name}: shares must be positive")));
                }
                Some((v, s))
            }
            (None, Some(_)) => {
                return Err(user_error(format!(
                    "{name}: shares need the variants they belong to"
                )));
            }
        };
        if let Some((v, _)) = &options.expected {
            let distinct: std::collections::BTreeSet<&String> = v.iter().collect();
            if v.len() < 2 || distinct.len() != v.len() {
                return Err(user_error(format!(
                    "{name}: variants must be at least two distinct values"
                )));
            }
        }
        Ok(options)
    }
}

fn list_values<T>(v: &ScalarValue, f: impl Fn(&ScalarValue) -> T) -> Vec<T> {
    let ScalarValue::List(list) = v else {
        return Vec::new();
    };
    if list.is_empty() || list.is_null(0) {
        return Vec::new();
    }
    let values = list.value(0);
    (0..values.len())
        .filter_map(|i| ScalarValue::try_from_array(&values, i).ok())
        .filter(|s| !s.is_null())
        .map(|s| f(&s))
        .collect()
}

#[derive(Debug)]
struct ExperimentAccumulator {
    test: Test,
    options: Options,
    cells: BTreeMap<String, Moments>,
}

impl ExperimentAccumulator {
    fn cell(&mut self, variant: &str) -> Result<&mut Moments> {
        if !self.cells.contains_key(variant) {
            if self.cells.len() >= MAX_VARIANTS {
                return Err(FunctionError::TooLarge(format!(
                    "{}: more than {MAX_VARIANTS} variants in one group; `variant` should \
                     name the experiment's arms",
                    self.test.name()
                ))
                .into());
            }
            self.cells.insert(variant.to_string(), Moments::default());
        }
        Ok(self.cells.get_mut(variant).expect("inserted above"))
    }

    /// The control variant: the named one, else the first in text order.
    fn control(&self) -> Option<(&String, &Moments)> {
        match &self.options.control {
            Some(c) => self.cells.get_key_value(c),
            None => self.cells.iter().next(),
        }
    }

    fn per_variant(&self) -> Result<ScalarValue> {
        let fields = self.test.fields();
        let Some((control, c)) = self.control() else {
            return ScalarValue::try_from(self.test.return_type());
        };
        let mut rows: Vec<Vec<ScalarValue>> = Vec::new();
        for (variant, t) in self.cells.iter().filter(|(v, _)| *v != control) {
            let mut row = vec![
                ScalarValue::Utf8(Some(variant.clone())),
                ScalarValue::Utf8(Some(control.clone())),
                int(c.n),
                int(t.n),
            ];
            let alpha = self.options.alpha;
            match self.test {
                Test::AbTest => {
                    let (xc, xt) = (successes(c), successes(t));
                    let r = stats::two_proportions(xc, c.n, xt, t.n, alpha);
                    row.extend(conversions(c, t));
                    push_estimate(&mut row, Some(&r.absolute), true);
                    push_estimate(&mut row, r.relative.as_ref(), false);
                }
                Test::TTest | Test::CupedTTest | Test::Sequential => {
                    let (cs, ts, extra) = if self.test == Test::CupedTTest {
                        let mut pair = *c;
                        pair.merge(t);
                        let theta = pair.theta();
                        let (ca, ta) = if theta.is_finite() {
                            (
                                c.adjusted(theta, pair.mean_x),
                                t.adjusted(theta, pair.mean_x),
                            )
                        } else {
                            (c.summary(), t.summary())
                        };
                        let raw = c.variance_y() / c.n + t.variance_y() / t.n;
                        let adjusted = ca.variance / ca.n + ta.variance / ta.n;
                        (ca, ta, vec![float(theta), float(1.0 - adjusted / raw)])
                    } else {
                        (c.summary(), t.summary(), vec![])
                    };
                    row.extend([cs.mean, ts.mean, cs.variance, ts.variance].map(float));
                    let (abs, rel) = stats::welch(cs, ts, alpha);
                    if self.test == Test::Sequential {
                        let n = cs.n + ts.n;
                        let tuning = self.options.tuning;
                        let abs = stats::sequential(abs.estimate, abs.se, n, alpha, tuning);
                        let rel =
                            rel.map(|r| stats::sequential(r.estimate, r.se, n, alpha, tuning));
                        row.extend([abs.estimate, abs.ci_low, abs.ci_high, abs.p_value].map(float));
                        push_estimate(&mut row, rel.as_ref(), false);
                    } else {
                        row.extend(
                            [
                                abs.estimate,
                                abs.ci_low,
                                abs.ci_high,
                                abs.statistic,
                                abs.df.unwrap_or(f64::NAN),
                                abs.p_value,
                            ]
                            .map(float),
                        );
                        push_estimate(&mut row, rel.as_ref(), false);
                        row.extend(extra);
                    }
                }
                Test::BayesAb => {
                    let (a0, b0) = self.options.prior;
                    let (xc, xt) = (successes(c), successes(t));
                    let r =
                        stats::beta_comparison((a0 + xc, b0 + c.n - xc), (a0 + xt, b0 + t.n - xt));
                    row.extend(conversions(c, t));
                    row.extend([r.chance_to_win, r.risk_treatment, r.risk_control].map(float));
                }
                Test::Srm | Test::Cuped => unreachable!("one-struct tests"),
            }
            rows.push(row);
        }
        let array = struct_array(&fields, &rows)?;
        Ok(SingleRowListArrayBuilder::new(array).build_list_scalar())
    }

    fn one_struct(&self) -> Result<ScalarValue> {
        let fields = self.test.fields();
        let row = match self.test {
            Test::Cuped => {
                let Some(m) = self.cells.get("") else {
                    return ScalarValue::try_from(self.test.return_type());
                };
                let theta = m.theta();
                let variance = m.variance_y();
                let adjusted = if theta.is_finite() {
                    m.adjusted(theta, m.mean_x).variance
                } else {
                    variance
                };
                vec![
                    int(m.n),
                    float(theta),
                    float(m.mean_y),
                    float(m.mean_x),
                    float(variance),
                    float(adjusted),
                    float(1.0 - adjusted / variance),
                ]
            }
            _ => {
                let (names, shares) = match &self.options.expected {
                    Some((v, s)) => (v.clone(), s.clone()),
                    None => {
                        let v: Vec<String> = self.cells.keys().cloned().collect();
                        let n = v.len();
                        (v, vec![1.0; n])
                    }
                };
                if names.len() < 2 {
                    return ScalarValue::try_from(self.test.return_type());
                }
                let observed: Vec<f64> = names
                    .iter()
                    .map(|v| self.cells.get(v).map_or(0.0, |m| m.n))
                    .collect();
                let total: f64 = observed.iter().sum();
                let share_total: f64 = shares.iter().sum();
                let (chi2, df, p) = stats::chi_square(&observed, &shares);
                let list = |values: Vec<ScalarValue>, t: DataType| -> Result<ScalarValue> {
                    let array = if values.is_empty() {
                        datafusion::arrow::array::new_empty_array(&t)
                    } else {
                        ScalarValue::iter_to_array(values)?
                    };
                    Ok(SingleRowListArrayBuilder::new(array).build_list_scalar())
                };
                vec![
                    list(
                        names
                            .iter()
                            .map(|v| ScalarValue::Utf8(Some(v.clone())))
                            .collect(),
                        DataType::Utf8,
                    )?,
                    list(observed.iter().map(|&n| int(n)).collect(), DataType::Int64)?,
                    list(
                        shares
                            .iter()
                            .map(|s| float(total * s / share_total))
                            .collect(),
                        DataType::Float64,
                    )?,
                    float(chi2),
                    int(df),
                    float(if total > 0.0 { p } else { f64::NAN }),
                ]
            }
        };
        let array = struct_array(&fields, &[row])?;
        Ok(ScalarValue::Struct(Arc::new(array.as_struct().clone())))
    }
}

fn int(x: f64) -> ScalarValue {
    ScalarValue::Int64(Some(x.round() as i64))
}

/// NaN and infinities (undefined statistics) are NULL.
fn float(x: f64) -> ScalarValue {
    ScalarValue::Float64(x.is_finite().then_some(x))
}

/// The number of 1s among a 0/1 column's rows: exact, though the running mean that
/// carries it is rounded.
fn successes(m: &Moments) -> f64 {
    (m.n * m.mean_y).round()
}

fn conversions(c: &Moments, t: &Moments) -> [ScalarValue; 4] {
    let (xc, xt) = (successes(c), successes(t));
    [int(xc), int(xt), float(xc / c.n), float(xt / t.n)]
}

/// estimate, low, high, [statistic,] p-value — NULLs when the estimate is undefined.
fn push_estimate(row: &mut Vec<ScalarValue>, e: Option<&Estimate>, with_statistic: bool) {
    let nan = f64::NAN;
    let (est, low, high, stat, p) = e.map_or((nan, nan, nan, nan, nan), |e| {
        (e.estimate, e.ci_low, e.ci_high, e.statistic, e.p_value)
    });
    row.extend([est, low, high].map(float));
    if with_statistic {
        row.push(float(stat));
    }
    row.push(float(p));
}

fn struct_array(fields: &Fields, rows: &[Vec<ScalarValue>]) -> Result<ArrayRef> {
    if rows.is_empty() {
        return Ok(datafusion::arrow::array::new_empty_array(
            &DataType::Struct(fields.clone()),
        ));
    }
    let columns = (0..fields.len())
        .map(|i| {
            let column = ScalarValue::iter_to_array(rows.iter().map(|r| r[i].clone()))?;
            if column.data_type() == fields[i].data_type() {
                Ok(column)
            } else {
                Ok(datafusion::arrow::compute::cast(
                    &column,
                    fields[i].data_type(),
                )?)
            }
        })
        .collect::<Result<Vec<ArrayRef>>>()?;
    Ok(Arc::new(StructArray::try_new(
        fields.clone(),
        columns,
        None,
    )?))
}

impl Accumulator for ExperimentAccumulator {
    fn update_batch(&mut self, values: &[ArrayRef]) -> Result<()> {
        let name = self.test.name();
        let (variants, ys, xs) = match self.test {
            Test::Cuped => (None, Some(&values[0]), Some(&values[1])),
            Test::Srm => (Some(&values[0]), None, None),
            Test::CupedTTest => (Some(&values[0]), Some(&values[1]), Some(&values[2])),
            _ => (Some(&values[0]), Some(&values[1]), None),
        };
        let variants = variants.map(|v| v.as_string::<i32>());
        let ys = ys.map(|a| a.as_primitive::<Float64Type>());
        let xs = xs.map(|a| a.as_primitive::<Float64Type>());
        let rows = values.first().map_or(0, |a| a.len());
        for i in 0..rows {
            let variant = match variants {
                Some(v) if v.is_null(i) => continue,
                Some(v) => v.value(i),
                None => "",
            };
            let y = match ys {
                Some(a) if a.is_null(i) => continue,
                Some(a) => a.value(i),
                None => 0.0,
            };
            let x = match xs {
                Some(a) if a.is_null(i) => continue,
                Some(a) => a.value(i),
                None => 0.0,
            };
            if !y.is_finite() || !x.is_finite() {
                return Err(row_error(format!(
                    "{name}: values must be finite numbers, got {}",
                    if y.is_finite() { x } else { y }
                )));
            }
            if self.test.binary() && y != 0.0 && y != 1.0 {
                return Err(row_error(format!(
                    "{name}: converted must be 0 or 1 (or a boolean), got {y}"
                )));
            }
            if self.test == Test::Srm
                && let Some((expected, _)) = &self.options.expected
                && !expected.iter().any(|e| e == variant)
            {
                return Err(row_error(format!(
                    "{name}: variant '{variant}' is not among the expected variants"
                )));
            }
            self.cell(variant)?.push(y, x);
        }
        Ok(())
    }

    fn merge_batch(&mut self, states: &[ArrayRef]) -> Result<()> {
        let names = states[0].as_list::<i32>();
        let mut moments = list_states::<Float64Type>(&states[1]);
        for i in 0..names.len() {
            if names.is_null(i) {
                continue;
            }
            let Some(numbers) = moments.next() else {
                break;
            };
            let keys = names.value(i);
            let keys = keys.as_string::<i32>();
            for (k, chunk) in numbers.values().chunks(WIDTH).enumerate() {
                if k < keys.len() && chunk.len() == WIDTH {
                    self.cell(keys.value(k))?.merge(&Moments::from_slice(chunk));
                }
            }
        }
        Ok(())
    }

    fn state(&mut self) -> Result<Vec<ScalarValue>> {
        let keys: Vec<ScalarValue> = self
            .cells
            .keys()
            .map(|k| ScalarValue::Utf8(Some(k.clone())))
            .collect();
        let keys = if keys.is_empty() {
            datafusion::arrow::array::new_empty_array(&DataType::Utf8)
        } else {
            ScalarValue::iter_to_array(keys)?
        };
        let numbers: Vec<f64> = self.cells.values().flat_map(|m| m.to_array()).collect();
        Ok(vec![
            SingleRowListArrayBuilder::new(keys).build_list_scalar(),
            list_state::<Float64Type>(numbers),
        ])
    }

    fn evaluate(&mut self) -> Result<ScalarValue> {
        if self.test.per_variant() {
            self.per_variant()
        } else {
            self.one_struct()
        }
    }

    fn size(&self) -> usize {
        std::mem::size_of_val(self)
            + self
                .cells
                .keys()
                .map(|k| k.len() + std::mem::size_of::<Moments>() + 48)
                .sum::<usize>()
    }
}
