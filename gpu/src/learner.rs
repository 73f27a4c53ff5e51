//! Every kind of model behind one face: what training hands the store ([`Learned`]) and what
//! the store hands the scoring functions ([`ModelScorer`]). A model's config says which it is
//! (`config.tabular`: `None` for the network), so `purchase_prob` and `propensity` score any
//! kind the same way, batch by batch.

use std::fs;
use std::path::{Path, PathBuf};

use candle_core::Tensor;

use crate::GpuError;
use crate::gbdt::GbdtModel;
use crate::logistic::LogisticModel;
use crate::purchase::{PurchaseConfig, PurchaseModel, Rows};
use crate::scorer::Scorer;
use crate::tabular::{CountsCache, TabularLearner};

/// The network's weights file in a version's directory.
pub const WEIGHTS: &str = "weights.safetensors";
/// A tabular model's parameters in a version's directory.
pub const PARAMETERS: &str = "model.json";

/// A trained model, as the store saves it.
#[derive(Debug, Clone)]
pub enum Learned {
    Network(PurchaseModel),
    Logistic(LogisticModel),
    Gbdt(GbdtModel),
}

impl From<PurchaseModel> for Learned {
    fn from(m: PurchaseModel) -> Self {
        Learned::Network(m)
    }
}

impl Learned {
    pub fn config(&self) -> &PurchaseConfig {
        match self {
            Learned::Network(m) => m.config(),
            Learned::Logistic(m) => &m.config,
            Learned::Gbdt(m) => &m.config,
        }
    }

    /// Writes the model's files into `dir`; returns them (to be synced).
    pub fn write(&self, dir: &Path) -> Result<Vec<PathBuf>, GpuError> {
        match self {
            Learned::Network(m) => {
                let weights: std::collections::HashMap<String, Tensor> =
                    m.named_tensors()?.into_iter().collect();
                let path = dir.join(WEIGHTS);
                candle_core::safetensors::save(&weights, &path)?;
                Ok(vec![path])
            }
            Learned::Logistic(m) => write_parameters(
                dir,
                serde_json::to_string_pretty(m)
                    .map_err(|e| GpuError::Io(format!("model parameters: {e}")))?,
            ),
            Learned::Gbdt(m) => write_parameters(dir, m.to_json()?),
        }
    }

    /// Reads a stored version's model from `dir`, of the kind `config` says.
    pub fn read(dir: &Path, config: &PurchaseConfig) -> Result<Learned, GpuError> {
        match &config.tabular {
            None => {
                let named =
                    candle_core::safetensors::load(dir.join(WEIGHTS), &candle_core::Device::Cpu)?;
                Ok(Learned::Network(PurchaseModel::from_named(
                    config.clone(),
                    &named,
                )?))
            }
            Some(spec) => {
                let path = dir.join(PARAMETERS);
                let text = fs::read_to_string(&path)
                    .map_err(|e| GpuError::Io(format!("{}: {e}", path.display())))?;
                let bad = |e: String| {
                    GpuError::Io(format!("{}: not a model's parameters: {e}", path.display()))
                };
                match spec.learner {
                    TabularLearner::Logistic => Ok(Learned::Logistic(
                        serde_json::from_str(&text).map_err(|e| bad(e.to_string()))?,
                    )),
                    TabularLearner::Gbdt => Ok(Learned::Gbdt(
                        GbdtModel::from_json(&text).map_err(|e| bad(e.to_string()))?,
                    )),
                }
            }
        }
    }
}

/// Writes a tabular model's parameters file; returns it.
fn write_parameters(dir: &Path, text: String) -> Result<Vec<PathBuf>, GpuError> {
    let path = dir.join(PARAMETERS);
    fs::write(&path, text).map_err(|e| GpuError::Io(format!("{}: {e}", path.display())))?;
    Ok(vec![path])
}

/// The sequence-counts cache a loaded tabular model scores with, when it reads counts.
fn counts_cache(config: &PurchaseConfig) -> Option<CountsCache> {
    config
        .tabular
        .as_ref()
        .and_then(|spec| CountsCache::new(config, spec))
}

/// "network", or the tabular learner's name, as `flashsql_models` shows it.
pub fn learner_name(learner: Option<TabularLearner>) -> &'static str {
    learner.map_or("network", |l| l.name())
}

/// A stored model ready to score, whatever its kind.
#[derive(Debug)]
pub enum ModelScorer {
    Network(Box<Scorer>),
    Logistic(Box<LogisticModel>, Option<CountsCache>),
    Gbdt(Box<GbdtModel>, Option<CountsCache>),
}

impl ModelScorer {
    pub fn new(model: &Learned) -> Result<ModelScorer, GpuError> {
        Ok(match model {
            Learned::Network(m) => ModelScorer::Network(Box::new(Scorer::new(m)?)),
            Learned::Logistic(m) => {
                ModelScorer::Logistic(Box::new(m.clone()), counts_cache(&m.config))
            }
            Learned::Gbdt(m) => ModelScorer::Gbdt(Box::new(m.clone()), counts_cache(&m.config)),
        })
    }

    pub fn config(&self) -> &PurchaseConfig {
        match self {
            ModelScorer::Network(s) => s.config(),
            ModelScorer::Logistic(m, _) => &m.config,
            ModelScorer::Gbdt(m, _) => &m.config,
        }
    }

    /// The user vectors of `sequences` from the network's encoder; `None` for a model
    /// without one (a tabular kind, or a network trained with `sequence => false`).
    pub fn user_vectors(&self, sequences: &[u32]) -> Result<Option<Vec<f32>>, GpuError> {
        match self {
            ModelScorer::Network(s) => s.user_vectors(sequences),
            ModelScorer::Logistic(..) | ModelScorer::Gbdt(..) => Ok(None),
        }
    }

    /// The columns a model reads, each row's values of them (`None` where an input is not
    /// one number: a network's sequence) and its contributions to the logit (one per column,
    /// then the bias; they sum to the logit): exact for a logistic model, TreeSHAP for trees,
    /// integrated gradients for the network.
    #[allow(clippy::type_complexity)]
    pub fn contributions(
        &self,
        rows: &Rows,
    ) -> Result<(Vec<String>, Vec<Option<f64>>, Vec<f64>), GpuError> {
        let known = |x: Vec<f64>| x.into_iter().map(Some).collect();
        Ok(match self {
            ModelScorer::Network(s) => s.contributions(rows)?,
            ModelScorer::Logistic(m, _) => {
                let (x, c) = m.contributions(rows)?;
                (m.columns.clone(), known(x), c)
            }
            ModelScorer::Gbdt(m, _) => {
                let (x, c) = m.contributions(rows)?;
                (m.columns.clone(), known(x), c)
            }
        })
    }

    /// The logit of every row.
    pub fn logits(&self, rows: &Rows) -> Result<Vec<f64>, GpuError> {
        match self {
            ModelScorer::Network(s) => s.logits(rows),
            ModelScorer::Logistic(m, counts) => m.logits(rows, counts.as_ref()),
            ModelScorer::Gbdt(m, counts) => m.logits(rows, counts.as_ref()),
        }
    }

    /// The probability of every row.
    pub fn probabilities(&self, rows: &Rows) -> Result<Vec<f64>, GpuError> {
        let mut out = self.logits(rows)?;
        for z in &mut out {
            *z = 1.0 / (1.0 + (-*z).exp());
        }
        Ok(out)
    }
}
