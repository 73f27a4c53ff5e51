//! Every kind of model behind one face: what training hands the store ([`Learned`]) and what
//! the store hands the scoring functions ([`ModelScorer`]). A model's config says which it is
//! (`config.tabular`: `None` for the network), so `purchase_prob` and `propensity` score any
//! kind the same way, batch by batch.

use std::fs;
use std::path::{Path, PathBuf};

use candle_core::Tensor;

use crate::GpuError;
use crate::logistic::LogisticModel;
use crate::purchase::{PurchaseConfig, PurchaseModel, Rows};
use crate::scorer::Scorer;

/// The network's weights file in a version's directory.
pub const WEIGHTS: &str = "weights.safetensors";
/// A tabular model's parameters in a version's directory.
pub const PARAMETERS: &str = "model.json";

/// A trained model, as the store saves it.
#[derive(Debug, Clone)]
pub enum Learned {
    Network(PurchaseModel),
    Logistic(LogisticModel),
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
        }
    }

    /// The learner's name, as `flashsql_models` shows it.
    pub fn learner(&self) -> &'static str {
        learner_name(self.config())
    }

    /// The logits of `rows`, as the stored model will score them.
    pub fn logits(&self, rows: &Rows) -> Result<Vec<f64>, GpuError> {
        match self {
            Learned::Network(m) => Scorer::new(m)?.logits(rows),
            Learned::Logistic(m) => m.logits(rows),
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
            Learned::Logistic(m) => {
                let path = dir.join(PARAMETERS);
                let text = serde_json::to_string_pretty(m)
                    .map_err(|e| GpuError::Io(format!("model parameters: {e}")))?;
                fs::write(&path, text)
                    .map_err(|e| GpuError::Io(format!("{}: {e}", path.display())))?;
                Ok(vec![path])
            }
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
            Some(_) => {
                let path = dir.join(PARAMETERS);
                let text = fs::read_to_string(&path)
                    .map_err(|e| GpuError::Io(format!("{}: {e}", path.display())))?;
                let m: LogisticModel = serde_json::from_str(&text).map_err(|e| {
                    GpuError::Io(format!("{}: not a model's parameters: {e}", path.display()))
                })?;
                Ok(Learned::Logistic(m))
            }
        }
    }
}

/// "network", or the tabular learner's name.
pub fn learner_name(config: &PurchaseConfig) -> &'static str {
    config
        .tabular
        .as_ref()
        .map_or("network", |t| t.learner.name())
}

/// A stored model ready to score, whatever its kind.
#[derive(Debug)]
pub enum ModelScorer {
    Network(Box<Scorer>),
    Logistic(Box<LogisticModel>),
}

impl ModelScorer {
    pub fn new(model: &Learned) -> Result<ModelScorer, GpuError> {
        Ok(match model {
            Learned::Network(m) => ModelScorer::Network(Box::new(Scorer::new(m)?)),
            Learned::Logistic(m) => ModelScorer::Logistic(Box::new(m.clone())),
        })
    }

    pub fn config(&self) -> &PurchaseConfig {
        match self {
            ModelScorer::Network(s) => s.config(),
            ModelScorer::Logistic(m) => &m.config,
        }
    }

    /// The user vectors of `sequences` from the network's encoder; `None` for a model
    /// without one (a tabular kind, or a network trained with `sequence => false`).
    pub fn user_vectors(&self, sequences: &[u32]) -> Result<Option<Vec<f32>>, GpuError> {
        match self {
            ModelScorer::Network(s) => s.user_vectors(sequences),
            ModelScorer::Logistic(_) => Ok(None),
        }
    }

    /// The logit of every row.
    pub fn logits(&self, rows: &Rows) -> Result<Vec<f64>, GpuError> {
        match self {
            ModelScorer::Network(s) => s.logits(rows),
            ModelScorer::Logistic(m) => m.logits(rows),
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
