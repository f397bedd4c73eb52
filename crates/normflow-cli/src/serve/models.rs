//! The served models: each name holds the current model behind a lock that is only taken to
//! clone a pointer, so a reload swaps the whole model at once. A request keeps the model it
//! started with (and that model's compute queue) until it is answered; the old model's compute
//! thread ends when its last request is done.

use std::collections::BTreeMap;
use std::path::{Path, PathBuf};
use std::sync::mpsc::Sender;
use std::sync::{Arc, Mutex, RwLock};
use std::time::SystemTime;

use normflow::anomaly::Threshold;
use normflow::Flow;
use serde_json::{json, Value};

use super::batcher::{self, BatchConfig, Job};
use super::lock;
use super::metrics::Metrics;
use crate::commands::{threshold_of, CliError};
use crate::input::model_context_columns;
use crate::output::numbered;

/// A model file's identity on disk, to tell whether it changed.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct Stamp {
    modified: Option<SystemTime>,
    len: u64,
}

fn stamp(path: &Path) -> Option<Stamp> {
    let m = std::fs::metadata(path).ok()?;
    Some(Stamp { modified: m.modified().ok(), len: m.len() })
}

/// One loaded model with its compute queue.
pub struct Model {
    /// The flow.
    pub flow: Arc<Flow>,
    /// The anomaly threshold, for detectors.
    pub threshold: Option<Threshold>,
    /// Names of the data columns (recorded at training, else `x1…xd`).
    pub columns: Vec<String>,
    /// Names of the context columns of a conditional model (recorded, else `c1…ck`).
    pub context_columns: Vec<String>,
    /// The compute thread's queue.
    pub jobs: Sender<Job>,
    stamp: Option<Stamp>,
    loaded_at: SystemTime,
}

impl Model {
    fn load(name: &str, path: &Path, config: BatchConfig, metrics: &Arc<Metrics>) -> Result<Model, CliError> {
        let before = stamp(path);
        let flow = Flow::load(path)?;
        let threshold = threshold_of(&flow, path).ok();
        let columns = flow.meta.columns.clone().filter(|c| c.len() == flow.dim()).unwrap_or_else(|| numbered("x", flow.dim()));
        let context_columns =
            model_context_columns(&flow).filter(|c| c.len() == flow.context_dim()).unwrap_or_else(|| numbered("c", flow.context_dim()));
        let flow = Arc::new(flow);
        let jobs = batcher::start(name, flow.clone(), config, metrics.clone())?;
        Ok(Model { flow, threshold, columns, context_columns, jobs, stamp: before, loaded_at: SystemTime::now() })
    }

    /// What `GET /v1/models` says about the model.
    pub fn describe(&self) -> Value {
        let f = &self.flow;
        let since = self.loaded_at.duration_since(SystemTime::UNIX_EPOCH).map_or(0, |d| d.as_secs());
        json!({
            "flow": f.meta.name,
            "dim": f.dim(),
            "context_dim": f.context_dim(),
            "columns": self.columns,
            "context_columns": self.context_columns,
            "params": f.num_params(),
            "training": f.meta.training,
            "anomaly_threshold": self.threshold.as_ref().map(|t| json!({ "threshold": t.threshold, "quantile": t.quantile })),
            "loaded_at_unix": since,
        })
    }
}

/// A served name: its file, its current model, and the last reload failure.
struct Slot {
    path: PathBuf,
    current: RwLock<Arc<Model>>,
    reload_error: Mutex<Option<String>>,
}

/// Every served model by name.
pub struct Registry {
    slots: BTreeMap<String, Slot>,
    config: BatchConfig,
    metrics: Arc<Metrics>,
}

/// Splits a `name=path` or `path` argument.
fn parse_spec(spec: &str) -> Result<(String, PathBuf), CliError> {
    let (name, path) = match spec.split_once('=') {
        Some((n, p)) if !n.is_empty() && !n.contains('/') => (n.to_string(), PathBuf::from(p)),
        _ => {
            let path = PathBuf::from(spec);
            let stem = path.file_stem().and_then(|s| s.to_str()).unwrap_or("").to_string();
            (stem, path)
        }
    };
    if name.is_empty() || !name.chars().all(|c| c.is_ascii_alphanumeric() || "-_.".contains(c)) {
        return Err(CliError::Usage(format!("{spec}: a model name takes letters, digits, '-', '_' and '.' (name it with name=path)")));
    }
    Ok((name, path))
}

impl Registry {
    /// Loads every model named by the arguments; any failure stops the start.
    pub fn load(specs: &[String], config: BatchConfig, metrics: Arc<Metrics>) -> Result<Registry, CliError> {
        let mut slots = BTreeMap::new();
        for spec in specs {
            let (name, path) = parse_spec(spec)?;
            if slots.contains_key(&name) {
                return Err(CliError::Usage(format!("two models are named {name}; name them with name=path")));
            }
            let model = Model::load(&name, &path, config, &metrics)?;
            slots.insert(name, Slot { path, current: RwLock::new(Arc::new(model)), reload_error: Mutex::new(None) });
        }
        Ok(Registry { slots, config, metrics })
    }

    /// The current model of `name`.
    pub fn get(&self, name: &str) -> Option<Arc<Model>> {
        self.slots.get(name).map(|s| s.current.read().unwrap_or_else(|e| e.into_inner()).clone())
    }

    /// The served names.
    pub fn names(&self) -> impl Iterator<Item = &str> {
        self.slots.keys().map(String::as_str)
    }

    /// `GET /v1/models/{name}`: the model's description, its file and its last reload error.
    pub fn describe(&self, name: &str) -> Option<Value> {
        let slot = self.slots.get(name)?;
        let mut v = self.get(name)?.describe();
        v["name"] = json!(name);
        v["path"] = json!(slot.path.display().to_string());
        v["reload_error"] = json!(*lock(&slot.reload_error));
        Some(v)
    }

    /// Reloads every model whose file changed since it was loaded. A model that fails to load
    /// keeps the old one; the reason goes to the log, to `/v1/models` and to the answer.
    pub fn reload(&self) -> Value {
        let mut report = serde_json::Map::new();
        for (name, slot) in &self.slots {
            let old = self.get(name).expect("every slot has a model");
            let now = stamp(&slot.path);
            let result = if now.is_some() && now == old.stamp {
                self.metrics.record_reload(name, "unchanged");
                json!({ "result": "unchanged" })
            } else {
                match Model::load(name, &slot.path, self.config, &self.metrics) {
                    Ok(model) => {
                        *slot.current.write().unwrap_or_else(|e| e.into_inner()) = Arc::new(model);
                        *lock(&slot.reload_error) = None;
                        self.metrics.record_reload(name, "ok");
                        eprintln!("reloaded {name} from {}", slot.path.display());
                        json!({ "result": "reloaded" })
                    }
                    Err(e) => {
                        let why = format!("{}: {e}; still serving the model loaded before", slot.path.display());
                        eprintln!("reload of {name} failed: {why}");
                        *lock(&slot.reload_error) = Some(why.clone());
                        self.metrics.record_reload(name, "failed");
                        json!({ "result": "failed", "error": why })
                    }
                }
            };
            report.insert(name.clone(), result);
        }
        Value::Object(report)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn model_names_come_from_the_stem_or_the_prefix() {
        assert_eq!(parse_spec("dir/demo.safetensors").unwrap(), ("demo".to_string(), PathBuf::from("dir/demo.safetensors")));
        assert_eq!(parse_spec("fraud=m/v2.safetensors").unwrap(), ("fraud".to_string(), PathBuf::from("m/v2.safetensors")));
        assert!(parse_spec("bad name=x.safetensors").is_err());
    }
}
