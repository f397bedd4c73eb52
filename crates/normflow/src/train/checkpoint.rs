//! Training checkpoints. A checkpoint is a model file holding the best weights so far (every
//! command that reads a model reads it), plus what a stopped run needs to go on: the current
//! weights, Adam's moments and the run's counters and history, in tensors and metadata that a
//! model reader skips. Written atomically, so a run killed mid-write leaves the previous one.

use std::path::{Path, PathBuf};

use serde::{Deserialize, Serialize};

use crate::engine::Adam;
use crate::io::{load_flow_with, save_flow_with, CHECKPOINT_PREFIX};
use crate::{Error, Flow, Result};

/// Metadata key of a checkpoint's run state.
const STATE_KEY: &str = "normflow_checkpoint";

/// Where and how often [`super::fit`] writes checkpoints.
#[derive(Clone, Debug, PartialEq)]
pub struct CheckpointConfig {
    /// The checkpoint file (replaced atomically each time).
    pub path: PathBuf,
    /// Seconds of training between checkpoints (one is also written when training stops).
    pub every_seconds: f64,
}

/// The counters and history of a run at a checkpoint.
#[derive(Clone, Debug, PartialEq, Serialize, Deserialize)]
pub(super) struct RunState {
    /// Optimisation steps taken.
    pub step: usize,
    /// Epochs started.
    pub epoch: usize,
    /// Seconds of training so far, over every resumed part of the run.
    pub seconds: f64,
    /// Best validation NLL and the step it was reached at.
    pub best_val: f64,
    pub best_step: usize,
    /// Adam's step count.
    pub adam_steps: i32,
    /// Validation and training NLL at each evaluation.
    pub val_nll: Vec<f64>,
    pub train_nll: Vec<f64>,
    /// What the split depends on: a resumed run must see the same rows and seed.
    pub seed: u64,
    pub rows: usize,
    pub val_rows: usize,
    /// Seconds inside optimisation steps so far, over every resumed part of the run (0 in
    /// checkpoints written before it was recorded).
    #[serde(default)]
    pub step_seconds: f64,
}

/// What a checkpoint holds besides its flow: the current weights, Adam's moments and the run
/// state.
pub(super) struct Resumed {
    pub current: Vec<f32>,
    pub adam_m: Vec<f32>,
    pub adam_v: Vec<f32>,
    pub state: RunState,
}

/// Writes a checkpoint: `best` (the flow with its best weights) and the rest of the run.
pub(super) fn save(path: &Path, best: &Flow, current: &[f32], adam: &Adam, state: &RunState) -> Result<()> {
    let (m, v, _) = adam.state();
    let extras = [
        (format!("{CHECKPOINT_PREFIX}current"), current),
        (format!("{CHECKPOINT_PREFIX}adam_m"), m),
        (format!("{CHECKPOINT_PREFIX}adam_v"), v),
    ];
    let json = serde_json::to_string(state).expect("run state serialises");
    save_flow_with(best, path, &extras, Some((STATE_KEY, json)))
}

/// Reads a checkpoint written by [`save`]: the flow with the best weights, and the rest.
///
/// # Errors
/// As [`crate::Flow::load`]; [`Error::BadModel`] for a model file that is not a checkpoint or
/// whose saved state does not fit its weights.
pub(super) fn load(path: &Path) -> Result<(Flow, Resumed)> {
    let (flow, mut extras, entries) = load_flow_with(path)?;
    let bad = |message: &str| Error::BadModel { path: path.into(), message: message.into() };
    let json = entries.get(STATE_KEY).ok_or_else(|| bad("a model file, not a training checkpoint (no run state to resume)"))?;
    let state: RunState = serde_json::from_str(json).map_err(|_| bad("damaged run state"))?;
    let n = flow.num_params();
    let mut take = |name: &str| -> Result<Vec<f32>> {
        match extras.remove(&format!("{CHECKPOINT_PREFIX}{name}")) {
            Some(v) if v.len() == n => Ok(v),
            _ => Err(bad(&format!("checkpoint tensor '{name}' is missing or of the wrong size"))),
        }
    };
    let (current, adam_m, adam_v) = (take("current")?, take("adam_m")?, take("adam_v")?);
    if current.iter().chain(&adam_m).chain(&adam_v).any(|v| !v.is_finite()) {
        return Err(bad("checkpoint holds non-finite values"));
    }
    Ok((flow, Resumed { current, adam_m, adam_v, state }))
}
