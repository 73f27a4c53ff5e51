//! The model store: `models/<name>/<version>/` under the data directory, each version a
//! safetensors file of weights and a JSON manifest. `name` means the deployed version and
//! `name@3` a pinned one; `models/<name>/deployment.json` records which version was
//! deployed when and why (a name never deployed explicitly means its latest version).
//! Loaded models are cached once per process and shared by every session (`Arc`).
//!
//! A version is written into a hidden directory, its files synced, then renamed into place
//! and the parent synced: a version that is listed is complete on disk.

use std::collections::{BTreeMap, HashMap};
use std::fs;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use serde::{Deserialize, Serialize};

use crate::GpuError;
use crate::device::DeviceChoice;
use crate::importance::Importance;
use crate::learner::{Learned, ModelScorer, WEIGHTS};
use crate::purchase::PurchaseConfig;
use crate::train::EpochReport;

const MANIFEST: &str = "manifest.json";
const DEPLOYMENT: &str = "deployment.json";
/// Deployments remembered per name (for rollbacks and the record of why).
const DEPLOYMENT_HISTORY: usize = 100;

/// One deployment of a model name: from then on, the bare name means `version`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Deployment {
    pub version: u32,
    /// Why: the strategy or the comparison that chose it.
    pub reason: String,
    /// Microseconds since the Unix epoch.
    pub at_us: i64,
}

/// How `deploy_model` picks the version to deploy.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum DeployTarget {
    Version(u32),
    /// The highest validation AUC (then the lowest log loss, then the newest).
    BestScore,
    MostRecent,
    /// The version deployed before the current one.
    Rollback,
}

/// What is known about a stored model version.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Manifest {
    pub name: String,
    pub version: u32,
    pub kind: String,
    /// Microseconds since the Unix epoch.
    pub created_at_us: i64,
    pub config: PurchaseConfig,
    /// Validation metrics of the kept (best) epoch.
    pub metrics: Metrics,
    pub seed: u64,
    pub device: String,
    pub training_seconds: f64,
    /// A hash of the training rows, whatever their order (`train::Trained::fingerprint`).
    pub data_fingerprint: String,
    pub train_rows: usize,
    pub valid_rows: usize,
    pub split: String,
    pub best_epoch: usize,
    pub epochs: Vec<EpochReport>,
    /// How much each input matters, measured on the validation rows after training
    /// (`explain_model`); empty for models stored before it was measured.
    #[serde(default)]
    pub importance: Vec<Importance>,
    /// The model whose trained encoder this one started from (`encoder_from`).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub encoder_from: Option<String>,
}

#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Metrics {
    pub valid_auc: Option<f64>,
    /// Of the stored model: after calibration when it is calibrated.
    pub valid_logloss: f64,
    /// Before calibration, when the model is calibrated.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub uncalibrated_logloss: Option<f64>,
    /// `kind => 'auto'`: every learner trained on the same split, and which was kept.
    #[serde(default, skip_serializing_if = "Vec::is_empty")]
    pub candidates: Vec<Candidate>,
}

/// One learner `kind => 'auto'` trained, on the same rows and split as the others.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
pub struct Candidate {
    pub learner: String,
    pub valid_auc: Option<f64>,
    pub valid_logloss: f64,
    pub training_seconds: f64,
    pub chosen: bool,
}

/// A version claimed for a model being trained.
#[derive(Debug)]
pub struct Reservation {
    pub name: String,
    pub version: u32,
    dir: PathBuf,
    done: bool,
}

impl Drop for Reservation {
    fn drop(&mut self) {
        if !self.done {
            let _ = fs::remove_dir_all(&self.dir);
        }
    }
}

/// A stored model ready to score.
#[derive(Debug)]
pub struct LoadedModel {
    pub manifest: Manifest,
    pub scorer: ModelScorer,
}

#[derive(Debug)]
pub struct ModelStore {
    dir: PathBuf,
    /// Every stored version's manifest, by name then version: read once at open and kept
    /// up to date by this store (the server is the directory's only writer), so resolving a
    /// name on every scored batch touches no file.
    index: Mutex<Index>,
    /// Each name's deployments, oldest first, as `deployment.json` holds them.
    deployments: Mutex<BTreeMap<String, Vec<Deployment>>>,
    cache: Mutex<HashMap<(String, u32), Arc<LoadedModel>>>,
    /// Serialises writers (new versions, drops) within the process.
    write: Mutex<()>,
    /// Where `train_model` trains unless a call says otherwise (`--device`).
    default_device: DeviceChoice,
}

type Index = BTreeMap<String, BTreeMap<u32, Manifest>>;

fn read_manifest(path: &Path) -> Result<Manifest, GpuError> {
    let text = fs::read_to_string(path).map_err(|e| io(path, e))?;
    serde_json::from_str(&text)
        .map_err(|e| GpuError::Io(format!("{}: not a model manifest: {e}", path.display())))
}

/// Checks a model name: letters, digits and underscores, at most 63 characters, not
/// starting with a digit (it is a directory name and is written unquoted in SQL strings).
pub fn check_name(name: &str) -> Result<(), GpuError> {
    let ok = !name.is_empty()
        && name.len() <= 63
        && name.chars().all(|c| c.is_ascii_alphanumeric() || c == '_')
        && !name.starts_with(|c: char| c.is_ascii_digit());
    if ok {
        Ok(())
    } else {
        Err(GpuError::InvalidName(name.to_string()))
    }
}

/// Splits `name` or `name@N`.
pub fn parse_spec(spec: &str) -> Result<(String, Option<u32>), GpuError> {
    let spec = spec.trim();
    let (name, version) = match spec.split_once('@') {
        Some((n, v)) => {
            let v: u32 = v
                .parse()
                .map_err(|_| GpuError::InvalidName(spec.to_string()))?;
            (n, Some(v))
        }
        None => (spec, None),
    };
    check_name(name)?;
    Ok((name.to_ascii_lowercase(), version))
}

fn io(path: &Path, e: std::io::Error) -> GpuError {
    GpuError::Io(format!("{}: {e}", path.display()))
}

fn sync_dir(path: &Path) -> Result<(), GpuError> {
    fs::File::open(path)
        .and_then(|f| f.sync_all())
        .map_err(|e| io(path, e))
}

impl ModelStore {
    pub fn open(dir: impl Into<PathBuf>) -> Result<ModelStore, GpuError> {
        let dir = dir.into();
        fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
        // Reservations and half-written deployment records left by a process that stopped
        // are removed; every complete version is indexed.
        let mut index = Index::new();
        let mut deployments = BTreeMap::new();
        for model in fs::read_dir(&dir).map_err(|e| io(&dir, e))?.flatten() {
            let name = model.file_name().to_string_lossy().to_string();
            if check_name(&name).is_err() {
                continue;
            }
            let record = model.path().join(DEPLOYMENT);
            if record.exists() {
                let text = fs::read_to_string(&record).map_err(|e| io(&record, e))?;
                let history: Vec<Deployment> = serde_json::from_str(&text).map_err(|e| {
                    GpuError::Io(format!(
                        "{}: not a deployment record: {e}",
                        record.display()
                    ))
                })?;
                deployments.insert(name.clone(), history);
            }
            for entry in fs::read_dir(model.path())
                .map_err(|e| io(&model.path(), e))?
                .flatten()
            {
                let file = entry.file_name().to_string_lossy().to_string();
                if file.starts_with(".writing-") {
                    let _ = fs::remove_dir_all(entry.path());
                } else if file == format!(".{DEPLOYMENT}.tmp") {
                    // A file: `remove_dir_all` leaves it (the crash test found one).
                    let _ = fs::remove_file(entry.path());
                } else if let Ok(version) = file.parse::<u32>() {
                    let manifest = read_manifest(&entry.path().join(MANIFEST))?;
                    index
                        .entry(name.clone())
                        .or_default()
                        .insert(version, manifest);
                }
            }
        }
        Ok(ModelStore {
            dir,
            index: Mutex::new(index),
            deployments: Mutex::new(deployments),
            cache: Mutex::new(HashMap::new()),
            write: Mutex::new(()),
            default_device: DeviceChoice::Auto,
        })
    }

    pub fn with_default_device(mut self, device: DeviceChoice) -> ModelStore {
        self.default_device = device;
        self
    }

    pub fn default_device(&self) -> DeviceChoice {
        self.default_device
    }

    pub fn dir(&self) -> &Path {
        &self.dir
    }

    fn lock_index(&self) -> std::sync::MutexGuard<'_, Index> {
        self.index.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Every stored version's manifest, by name then version.
    pub fn list(&self) -> Vec<Manifest> {
        self.lock_index()
            .values()
            .flat_map(|versions| versions.values().cloned())
            .collect()
    }

    fn unknown(&self, spec: &str) -> GpuError {
        let known: Vec<String> = self
            .list()
            .into_iter()
            .map(|m| format!("{}@{}", m.name, m.version))
            .collect();
        GpuError::UnknownModel {
            spec: spec.to_string(),
            known: if known.is_empty() {
                "none: train one with train_model".into()
            } else {
                known.join(", ")
            },
        }
    }

    fn lock_deployments(&self) -> std::sync::MutexGuard<'_, BTreeMap<String, Vec<Deployment>>> {
        self.deployments.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The deployment in force for `name`: the newest whose version still exists (a
    /// dropped version falls back to the one deployed before it). `None` when the name was
    /// never deployed explicitly, or none of its deployed versions is left.
    pub fn deployed(&self, name: &str) -> Option<Deployment> {
        let index = self.lock_index();
        let versions = index.get(name)?;
        self.lock_deployments()
            .get(name)?
            .iter()
            .rev()
            .find(|d| versions.contains_key(&d.version))
            .cloned()
    }

    /// Resolves `name` (the deployed version, else the latest) or `name@N` to a stored
    /// version.
    pub fn resolve(&self, spec: &str) -> Result<(String, u32), GpuError> {
        let (name, version) = parse_spec(spec)?;
        let deployed = match version {
            None => self.deployed(&name).map(|d| d.version),
            Some(_) => None,
        };
        let found = self
            .lock_index()
            .get(&name)
            .and_then(|versions| match version {
                Some(v) => versions.contains_key(&v).then_some(v),
                None => deployed.or_else(|| versions.keys().next_back().copied()),
            });
        found.map(|v| (name, v)).ok_or_else(|| self.unknown(spec))
    }

    /// Makes the bare `name` mean the version `target` picks, durably (the record is
    /// written and synced before this returns); `reason` is kept with it. Returns the
    /// version the name meant before and the deployment recorded now.
    pub fn deploy(
        &self,
        name: &str,
        target: DeployTarget,
        reason: &str,
    ) -> Result<(u32, Deployment), GpuError> {
        let (name, pinned) = parse_spec(name)?;
        if let Some(v) = pinned {
            return Err(GpuError::InvalidName(format!(
                "{name}@{v}: deploy a version with version => {v}"
            )));
        }
        let _guard = self.write.lock().unwrap_or_else(|p| p.into_inner());
        let before = self.resolve(&name)?.1;
        if let DeployTarget::Version(v) = target {
            self.resolve(&format!("{name}@{v}"))?;
        }
        let history = self
            .lock_deployments()
            .get(&name)
            .cloned()
            .unwrap_or_default();
        let (version, why) = {
            let index = self.lock_index();
            // (`self.unknown` would lock the index again.)
            let versions = index
                .get(&name)
                .ok_or_else(|| GpuError::Data(format!("{name}: dropped meanwhile")))?;
            match target {
                // Checked by resolve above, before the index was locked.
                DeployTarget::Version(v) => (v, format!("version {v} chosen")),
                DeployTarget::MostRecent => {
                    let v = versions.keys().next_back().copied().unwrap_or(before);
                    (v, "most recent version".to_string())
                }
                DeployTarget::BestScore => {
                    let best = versions
                        .values()
                        .max_by(|a, b| {
                            let auc =
                                |m: &Manifest| m.metrics.valid_auc.unwrap_or(f64::NEG_INFINITY);
                            auc(a)
                                .total_cmp(&auc(b))
                                .then(b.metrics.valid_logloss.total_cmp(&a.metrics.valid_logloss))
                                .then(a.version.cmp(&b.version))
                        })
                        .map_or(before, |m| m.version);
                    let m = &versions[&best];
                    let auc = m
                        .metrics
                        .valid_auc
                        .map_or("no AUC".to_string(), |a| format!("valid AUC {a:.4}"));
                    (best, format!("best score ({auc})"))
                }
                DeployTarget::Rollback => {
                    // The newest earlier deployment of another version that still exists;
                    // without one, the newest version older than the current.
                    let earlier = history
                        .iter()
                        .rev()
                        .skip_while(|d| d.version != before)
                        .find(|d| d.version != before && versions.contains_key(&d.version))
                        .map(|d| d.version)
                        .or_else(|| versions.range(..before).next_back().map(|(v, _)| *v));
                    match earlier {
                        Some(v) => (v, format!("rollback from version {before}")),
                        None => {
                            return Err(GpuError::Data(format!(
                                "{name}: no earlier version to roll back to from version {before}"
                            )));
                        }
                    }
                }
            }
        };
        let reason = if reason.is_empty() {
            why
        } else {
            format!("{reason}: {why}")
        };
        let deployment = Deployment {
            version,
            reason,
            at_us: std::time::SystemTime::now()
                .duration_since(std::time::UNIX_EPOCH)
                .map_or(0, |d| d.as_micros() as i64),
        };
        let mut history = history;
        history.push(deployment.clone());
        if history.len() > DEPLOYMENT_HISTORY {
            history.drain(..history.len() - DEPLOYMENT_HISTORY);
        }
        self.write_deployments(&name, &history)?;
        self.lock_deployments().insert(name, history);
        Ok((before, deployment))
    }

    /// Writes a name's deployment record atomically: a synced temporary file renamed over
    /// the old one, then the directory synced.
    fn write_deployments(&self, name: &str, history: &[Deployment]) -> Result<(), GpuError> {
        let base = self.dir.join(name);
        let tmp = base.join(format!(".{DEPLOYMENT}.tmp"));
        let text = serde_json::to_string_pretty(history)
            .map_err(|e| GpuError::Io(format!("deployment record: {e}")))?;
        fs::write(&tmp, text).map_err(|e| io(&tmp, e))?;
        fs::File::open(&tmp)
            .and_then(|f| f.sync_all())
            .map_err(|e| io(&tmp, e))?;
        let dst = base.join(DEPLOYMENT);
        fs::rename(&tmp, &dst).map_err(|e| io(&dst, e))?;
        sync_dir(&base)
    }

    /// The model `spec` refers to, loaded once per process.
    pub fn load(&self, spec: &str) -> Result<Arc<LoadedModel>, GpuError> {
        let key = self.resolve(spec)?;
        if let Some(m) = self.lock_cache().get(&key) {
            return Ok(m.clone());
        }
        let (manifest, dir) = self.stored(spec, &key)?;
        let model = Learned::read(&dir, &manifest.config)?;
        let loaded = Arc::new(LoadedModel {
            scorer: ModelScorer::new(&model)?,
            manifest,
        });
        self.lock_cache().insert(key, loaded.clone());
        Ok(loaded)
    }

    /// The manifest and directory of version `key` (what `spec` resolved to).
    fn stored(&self, spec: &str, key: &(String, u32)) -> Result<(Manifest, PathBuf), GpuError> {
        // The index guard must be gone before `unknown` lists the models (it locks again).
        let found = self
            .lock_index()
            .get(&key.0)
            .and_then(|versions| versions.get(&key.1))
            .cloned();
        let manifest = found.ok_or_else(|| self.unknown(spec))?;
        Ok((manifest, self.dir.join(&key.0).join(key.1.to_string())))
    }

    fn lock_cache(&self) -> std::sync::MutexGuard<'_, HashMap<(String, u32), Arc<LoadedModel>>> {
        self.cache.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The trained sequence encoder of network `spec`, to start another network from
    /// (`train_model(…, encoder_from => spec)`).
    pub fn encoder_weights(&self, spec: &str) -> Result<crate::train::EncoderInit, GpuError> {
        let key = self.resolve(spec)?;
        let (manifest, dir) = self.stored(spec, &key)?;
        let (name, version) = key;
        if manifest.config.tabular.is_some() || !manifest.config.use_sequence {
            return Err(GpuError::Incompatible(format!(
                "{name}@{version} has no sequence encoder (a tabular kind, or trained with sequence => false)"
            )));
        }
        let tensors = candle_core::safetensors::load(dir.join(WEIGHTS), &candle_core::Device::Cpu)?
            .into_iter()
            .filter(|(k, _)| k.starts_with("encoder."))
            .collect();
        Ok(crate::train::EncoderInit {
            from: format!("{name}@{version}"),
            config: manifest.config.encoder.clone(),
            tensors: Arc::new(tensors),
        })
    }

    /// Claims the next version of `name` before training, so that the version is known
    /// while training runs and two trainings never claim the same one. The claim is a
    /// hidden directory, removed if the reservation is dropped without [`ModelStore::save`].
    pub fn reserve(&self, name: &str) -> Result<Reservation, GpuError> {
        let (name, version) = parse_spec(name)?;
        if version.is_some() {
            return Err(GpuError::InvalidName(format!(
                "{name}@{}: a new model's version is chosen by the store",
                version.unwrap_or_default()
            )));
        }
        let _guard = self.write.lock().unwrap_or_else(|p| p.into_inner());
        let base = self.dir.join(&name);
        fs::create_dir_all(&base).map_err(|e| io(&base, e))?;
        // A number is never given twice while the name's deployment record remembers it:
        // after the newest version is dropped, a new one must not inherit its deployments
        // (or the `name@N` a query was pinned to).
        let recorded = self
            .lock_deployments()
            .get(&name)
            .and_then(|h| h.iter().map(|d| d.version).max())
            .unwrap_or(0);
        let claimed = fs::read_dir(&base)
            .map_err(|e| io(&base, e))?
            .flatten()
            .filter_map(|e| {
                let n = e.file_name().to_str()?.to_string();
                n.strip_prefix(".writing-")
                    .unwrap_or(&n)
                    .parse::<u32>()
                    .ok()
            })
            .max()
            .unwrap_or(0)
            .max(recorded);
        let version = claimed + 1;
        let dir = base.join(format!(".writing-{version}"));
        fs::create_dir_all(&dir).map_err(|e| io(&dir, e))?;
        Ok(Reservation {
            name,
            version,
            dir,
            done: false,
        })
    }

    /// Stores `model` as the reserved version and returns once it is durable.
    pub fn save(
        &self,
        mut reservation: Reservation,
        mut manifest: Manifest,
        model: &Learned,
    ) -> Result<u32, GpuError> {
        let (version, tmp) = (reservation.version, reservation.dir.clone());
        manifest.name = reservation.name.clone();
        manifest.version = version;
        // The weights' own shape and calibration: a manifest can never disagree with them.
        manifest.config = model.config().clone();
        let base = self.dir.join(&manifest.name);
        let mut files = model.write(&tmp)?;
        let mpath = tmp.join(MANIFEST);
        let text = serde_json::to_string_pretty(&manifest)
            .map_err(|e| GpuError::Io(format!("manifest: {e}")))?;
        fs::write(&mpath, text).map_err(|e| io(&mpath, e))?;
        files.push(mpath);
        for p in &files {
            fs::File::open(p)
                .and_then(|f| f.sync_all())
                .map_err(|e| io(p, e))?;
        }
        sync_dir(&tmp)?;
        let dst = base.join(version.to_string());
        fs::rename(&tmp, &dst).map_err(|e| io(&dst, e))?;
        reservation.done = true;
        sync_dir(&base)?;
        sync_dir(&self.dir)?;
        self.lock_index()
            .entry(manifest.name.clone())
            .or_default()
            .insert(version, manifest);
        Ok(version)
    }

    /// Deletes one version, or every version of `name`; returns the versions deleted.
    pub fn drop_model(&self, name: &str, version: Option<u32>) -> Result<Vec<u32>, GpuError> {
        // `name@N` names one version too; with a version given as well, they must agree.
        let (name, pinned) = parse_spec(name)?;
        let version = match (version, pinned) {
            (Some(a), Some(b)) if a != b => {
                return Err(GpuError::InvalidName(format!(
                    "{name}@{b} with version {a}"
                )));
            }
            (v, p) => v.or(p),
        };
        let spec = match version {
            Some(v) => format!("{name}@{v}"),
            None => name.clone(),
        };
        let _guard = self.write.lock().unwrap_or_else(|p| p.into_inner());
        let existing: Vec<u32> = self
            .lock_index()
            .get(&name)
            .map(|versions| versions.keys().copied().collect())
            .unwrap_or_default();
        let doomed: Vec<u32> = match version {
            Some(v) if existing.contains(&v) => vec![v],
            None if !existing.is_empty() => existing,
            _ => return Err(self.unknown(&spec)),
        };
        let base = self.dir.join(&name);
        for v in &doomed {
            let dir = base.join(v.to_string());
            fs::remove_dir_all(&dir).map_err(|e| io(&dir, e))?;
            let mut index = self.lock_index();
            if let Some(versions) = index.get_mut(&name) {
                versions.remove(v);
                if versions.is_empty() {
                    index.remove(&name);
                }
            }
            self.lock_cache().remove(&(name.clone(), *v));
        }
        // With its last version goes its deployment record; the name's directory goes once
        // it is empty (a version being trained keeps it).
        if !self.lock_index().contains_key(&name) {
            self.lock_deployments().remove(&name);
            let record = base.join(DEPLOYMENT);
            if record.exists() {
                fs::remove_file(&record).map_err(|e| io(&record, e))?;
            }
        }
        if fs::remove_dir(&base).is_ok() {
            sync_dir(&self.dir)?;
        } else {
            sync_dir(&base)?;
        }
        Ok(doomed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// What a process killed while writing leaves — a reserved version folder and a
    /// deployment record's temporary file — is gone when the store is opened again.
    #[test]
    fn opening_removes_what_a_killed_writer_left() {
        let dir = tempfile::tempdir().expect("temp dir");
        let model = dir.path().join("m");
        fs::create_dir_all(model.join(".writing-3")).expect("reservation");
        fs::write(model.join(format!(".{DEPLOYMENT}.tmp")), "[").expect("record");
        ModelStore::open(dir.path()).expect("open");
        let left: Vec<String> = fs::read_dir(&model)
            .expect("model dir")
            .flatten()
            .map(|e| e.file_name().to_string_lossy().to_string())
            .collect();
        assert!(left.is_empty(), "left behind: {left:?}");
    }
}
