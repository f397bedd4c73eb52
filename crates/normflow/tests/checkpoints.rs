//! Training checkpoints: a run stopped at a checkpoint and resumed goes on where it stood.

use std::path::PathBuf;

use normflow::flows::RealNvpConfig;
use normflow::train::{fit, resume_fit, CheckpointConfig, FitConfig};
use normflow::{Error, Flow, Matrix, Rng};

fn temp(name: &str) -> PathBuf {
    std::env::temp_dir().join(format!("normflow-checkpoints-{name}-{}.safetensors", std::process::id()))
}

/// Rows of two moons: far from the Gaussian the flow starts as, so training has a long way to go.
fn rows(n: usize, seed: u64) -> Matrix {
    normflow::data::toy::generate("moons", n, seed).unwrap()
}

fn fresh_flow() -> Flow {
    RealNvpConfig::new(2).with_layers(2).with_hidden(vec![16]).init(&mut Rng::new(3)).unwrap()
}

fn config(steps: usize, checkpoint: Option<PathBuf>) -> FitConfig {
    FitConfig {
        lr: 3e-3,
        batch_size: 64,
        max_steps: Some(steps),
        eval_every: Some(5),
        patience: None,
        min_gain_z: None,
        checkpoint: checkpoint.map(|path| CheckpointConfig { path, every_seconds: 0.0 }),
        ..FitConfig::default()
    }
}

#[test]
fn a_resumed_run_goes_on_from_its_checkpoint() {
    let x = rows(2000, 1);
    let path = temp("resume");
    let (whole, whole_history) = fit(fresh_flow(), &x, None, &config(80, None), &mut |_| {}).unwrap();
    // The same run stopped after 40 steps, then resumed to 80.
    let (half, half_history) = fit(fresh_flow(), &x, None, &config(40, Some(path.clone())), &mut |_| {}).unwrap();
    // The checkpoint is a model file with the best weights so far.
    let saved = Flow::load(&path).unwrap();
    assert_eq!(saved.log_prob(&x, None).unwrap(), half.log_prob(&x, None).unwrap());
    let mut steps_seen = Vec::new();
    let (resumed, history) = resume_fit(&path, &x, None, &config(80, Some(path.clone())), &mut |p| steps_seen.push(p.step)).unwrap();
    assert_eq!(steps_seen.first(), Some(&41), "the resumed run starts at the checkpoint's step");
    assert_eq!(history.summary.steps, 80);
    assert_eq!(history.val_nll.len(), 16, "one evaluation every 5 steps over the whole run");
    assert_eq!(history.val_nll[..8], half_history.val_nll[..], "the history before the stop is kept");
    assert_eq!(history.val_nll[..8], whole_history.val_nll[..8], "up to the stop, the run is the uninterrupted one");
    // After the stop batches come in another order: the run goes on improving as the
    // uninterrupted one did, not from scratch (a fresh run's first evaluations are far worse).
    let (end, whole_end) = (history.summary.best_val_nll, whole_history.summary.best_val_nll);
    assert!(end < half_history.summary.best_val_nll - 1e-3, "resumed {end} against {} at the stop", half_history.summary.best_val_nll);
    assert!((end - whole_end).abs() < 0.05, "resumed {end} against {whole_end} uninterrupted");
    assert!(resumed.log_prob(&x, None).unwrap().iter().all(|v| v.is_finite()));
    drop(whole);
    std::fs::remove_file(&path).ok();
}

#[test]
fn resuming_needs_a_checkpoint_of_the_same_data() {
    let x = rows(500, 2);
    let path = temp("mismatch");
    fit(fresh_flow(), &x, None, &config(5, Some(path.clone())), &mut |_| {}).unwrap();
    let other = rows(400, 2);
    let err = resume_fit(&path, &other, None, &config(10, None), &mut |_| {}).unwrap_err();
    assert!(matches!(err, Error::InvalidConfig(_)) && err.to_string().contains("500 rows"), "{err}");
    let with_gain_test = FitConfig { min_gain_z: Some(2.0), ..config(10, None) };
    assert!(resume_fit(&path, &x, None, &with_gain_test, &mut |_| {}).is_err());
    // A plain model file is not a checkpoint; a truncated checkpoint is refused.
    let model = temp("plain");
    fresh_flow().save(&model).unwrap();
    let err = resume_fit(&model, &x, None, &config(10, None), &mut |_| {}).unwrap_err();
    assert!(err.to_string().contains("not a training checkpoint"), "{err}");
    let bytes = std::fs::read(&path).unwrap();
    std::fs::write(&path, &bytes[..bytes.len() / 2]).unwrap();
    assert!(matches!(resume_fit(&path, &x, None, &config(10, None), &mut |_| {}), Err(Error::BadModel { .. })));
    for p in [path, model] {
        std::fs::remove_file(p).ok();
    }
}

#[test]
fn a_run_stopped_by_its_time_limit_keeps_the_steps_since_its_last_evaluation() {
    let x = rows(2000, 3);
    let config = FitConfig { eval_every: Some(1_000_000), max_steps: None, max_seconds: Some(0.3), ..config(0, None) };
    let config = FitConfig { max_epochs: 1_000_000, ..config };
    let (_, history) = fit(fresh_flow(), &x, None, &config, &mut |_| {}).unwrap();
    assert_eq!(history.summary.stopped, "max_seconds");
    assert_eq!(history.val_nll.len(), 1, "one evaluation, at the stop");
    assert!(history.summary.best_step > 0, "the trained weights are kept, not the starting point");
}
