//! Checkpoints of long training runs (`image train`, `audio train`): where they are kept, the
//! checks before a run starts or resumes, and the fit settings that write them.

use std::path::{Path, PathBuf};

use normflow::train::CheckpointConfig;
use normflow::Flow;

use super::CliError;
use crate::cli::CheckpointArgs;

/// Where a run writing `OUTPUT` keeps its checkpoint: `OUTPUT` with `.checkpoint` before the
/// extension (`glow.safetensors` → `glow.checkpoint.safetensors`).
pub(crate) fn checkpoint_path(output: &Path) -> PathBuf {
    let stem = output.file_stem().map_or_else(|| "model".into(), |s| s.to_string_lossy().into_owned());
    let ext = output.extension().map_or_else(|| "safetensors".into(), |e| e.to_string_lossy().into_owned());
    output.with_file_name(format!("{stem}.checkpoint.{ext}"))
}

/// Checks the flags before any data is read: a positive or zero interval, and a checkpoint to
/// resume from. Returns the checkpoint's path.
pub(crate) fn prepare(args: &CheckpointArgs, output: &Path) -> Result<PathBuf, CliError> {
    if !(args.checkpoint_minutes >= 0.0 && args.checkpoint_minutes.is_finite()) {
        return Err(CliError::Usage("--checkpoint-minutes must be at least 0".into()));
    }
    let path = checkpoint_path(output);
    if args.resume && !path.exists() {
        return Err(CliError::Usage(format!(
            "--resume: no checkpoint at {} (it is written beside the output while training)",
            path.display()
        )));
    }
    Ok(path)
}

/// The fit's checkpoint settings (none when the interval is 0).
pub(crate) fn config(args: &CheckpointArgs, path: &Path) -> Option<CheckpointConfig> {
    (args.checkpoint_minutes > 0.0).then(|| CheckpointConfig { path: path.to_path_buf(), every_seconds: args.checkpoint_minutes * 60.0 })
}

/// The training time limit of `--minutes`, in seconds: positive and finite, or none.
pub(crate) fn time_limit(minutes: Option<f64>) -> Result<Option<f64>, CliError> {
    match minutes {
        Some(m) if !(m > 0.0 && m.is_finite()) => Err(CliError::Usage("--minutes must be positive".into())),
        _ => Ok(minutes.map(|m| m * 60.0)),
    }
}

/// Refuses to resume a checkpoint whose architecture differs from the one the flags build;
/// returns the checkpoint's flow for further checks.
pub(crate) fn check_same_architecture(path: &Path, flow: &Flow, what: &str) -> Result<Flow, CliError> {
    let saved = Flow::load(path)?;
    if saved.transform().spec() != flow.transform().spec() {
        return Err(CliError::Usage(format!(
            "{}: the checkpoint holds another {what}; resume with the flags that started the run",
            path.display()
        )));
    }
    Ok(saved)
}
