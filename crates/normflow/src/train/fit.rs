//! The complete maximum-likelihood training loop.

use std::path::Path;
use std::time::Instant;

use serde::{Deserialize, Serialize};

use super::checkpoint::{self, CheckpointConfig, Resumed, RunState};
use super::smoothing::Smoothing;
use super::Trainer;
use crate::engine::{Matrix, Rng};
use crate::{Error, Flow, Result};

/// Learning-rate schedule over the run.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum LrSchedule {
    /// The same rate throughout.
    Constant,
    /// Cosine decay from the rate to 0 over the step budget, or over `max_seconds` when the
    /// time limit would stop the run first.
    Cosine,
}

/// Training settings. Defaults: Adam lr 5e-4, batch 256, 10% validation, 200 epochs at most,
/// patience 20 epochs, gradient-norm clip 5, seed 0, trained weights kept only when they beat
/// the starting point by 2 standard errors on the validation rows.
#[derive(Clone, Debug, PartialEq)]
pub struct FitConfig {
    /// Learning rate.
    pub lr: f32,
    /// Rows per step.
    pub batch_size: usize,
    /// Fraction of rows held out for validation (early stopping, restore-best); 0 turns it off.
    pub val_frac: f64,
    /// Epoch limit.
    pub max_epochs: usize,
    /// Step limit (`None`: epochs only).
    pub max_steps: Option<usize>,
    /// Epochs without validation improvement before stopping (`None`: never stop early).
    pub patience: Option<usize>,
    /// Gradient-norm clip (`None`: off).
    pub grad_clip: Option<f32>,
    /// Learning-rate schedule.
    pub schedule: LrSchedule,
    /// Seed for the split and the batch order.
    pub seed: u64,
    /// Evaluate the validation set every this many steps (`None`: once per epoch).
    pub eval_every: Option<usize>,
    /// Keep the trained weights only if they beat the starting point (for a preset, the
    /// full-covariance Gaussian of the training rows) on the validation rows by at least this
    /// many standard errors of the paired per-row difference; otherwise return the starting
    /// point. On a small table, where a few validation rows cannot tell a real gain from noise,
    /// this keeps a flow from ending worse than the Gaussian. `None`: keep the best weights.
    pub min_gain_z: Option<f64>,
    /// Initialise data-dependent layers (and re-measure batch statistics at the end) on at most
    /// this many rows, drawn with the seed (`None`: every row). Images need only a sample;
    /// tabular presets start as the Gaussian of exactly the rows they initialise on.
    pub init_rows: Option<usize>,
    /// Stop after this many seconds of training (`None`: no time limit); the best validation
    /// weights are kept as for any other stop.
    pub max_seconds: Option<f64>,
    /// Gaussian noise regularisation: every training batch gets fresh noise with standard
    /// deviation this factor times each column's standard deviation (the initialisation and
    /// validation rows one fixed draw), so the flow fits the data's density smoothed by that
    /// kernel (see [`scott_factor`](super::scott_factor) for a width that suits the table).
    /// Steadies small tables for anomaly scores; widens the density. `None`: off.
    pub smoothing: Option<f64>,
    /// Write a checkpoint (best weights as a model file, plus what [`resume_fit`] needs) every
    /// so often and when training stops (`None`: no checkpoints).
    pub checkpoint: Option<CheckpointConfig>,
    /// A non-finite loss ends the run with the best weights so far (`stopped` reads
    /// "diverged") instead of failing with [`Error::NonFiniteLoss`]: for long runs, where an
    /// hour of progress should not be lost to one bad step. Default false.
    pub stop_on_divergence: bool,
}

impl Default for FitConfig {
    fn default() -> Self {
        Self {
            lr: 5e-4,
            batch_size: 256,
            val_frac: 0.1,
            max_epochs: 200,
            max_steps: None,
            patience: Some(20),
            grad_clip: Some(5.0),
            schedule: LrSchedule::Constant,
            seed: 0,
            eval_every: None,
            min_gain_z: Some(2.0),
            init_rows: None,
            max_seconds: None,
            smoothing: None,
            checkpoint: None,
            stop_on_divergence: false,
        }
    }
}

/// What [`fit`] reports to its progress callback after every step.
#[derive(Clone, Debug, PartialEq)]
pub struct FitProgress {
    /// Steps taken.
    pub step: usize,
    /// Step budget of the whole run (epochs × steps per epoch, or the step limit).
    pub total_steps: usize,
    /// Current epoch (1-based).
    pub epoch: usize,
    /// Mean training NLL over the recent steps (nats per row).
    pub train_nll: f64,
    /// Latest validation NLL, once one was computed.
    pub val_nll: Option<f64>,
    /// Seconds of training so far, over every resumed part of the run.
    pub seconds: f64,
}

/// The record of a training run.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct History {
    /// Validation NLL at each evaluation (or training NLL when there is no validation split).
    pub val_nll: Vec<f64>,
    /// Mean training NLL since the previous evaluation.
    pub train_nll: Vec<f64>,
    /// Summary (also stored in the model's metadata).
    pub summary: TrainingSummary,
}

/// Summary of a training run, saved with the model.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct TrainingSummary {
    /// Optimisation steps taken.
    pub steps: usize,
    /// Epochs started.
    pub epochs: usize,
    /// Rows used for training.
    pub train_rows: usize,
    /// Rows held out for validation.
    pub val_rows: usize,
    /// Best validation NLL (nats per row), the weights kept.
    pub best_val_nll: f64,
    /// Step at which the kept weights were reached.
    pub best_step: usize,
    /// Mean training NLL over the last evaluation period.
    pub final_train_nll: f64,
    /// Why training stopped: "early_stopping", "max_epochs", "max_steps" or "max_seconds".
    pub stopped: String,
    /// Wall-clock seconds.
    pub seconds: f64,
    /// Seconds inside the optimisation steps (batch preparation, gradient and update), without
    /// the evaluations, initialisation and checkpoints that `seconds` also counts: the time a
    /// training rate (`steps · batch_size / step_seconds`) compares with another library's.
    /// 0 in models saved before it was recorded.
    #[serde(default)]
    pub step_seconds: f64,
    /// Learning rate.
    pub lr: f32,
    /// Batch size.
    pub batch_size: usize,
    /// Seed.
    pub seed: u64,
}

fn params_snapshot(flow: &Flow) -> Vec<f32> {
    let mut v = Vec::with_capacity(flow.num_params());
    flow.transform().params(&mut |p| v.extend_from_slice(p));
    v
}

fn params_restore(flow: &mut Flow, snapshot: &[f32]) {
    let mut off = 0;
    flow.transform_mut().params_mut(&mut |p| {
        p.copy_from_slice(&snapshot[off..off + p.len()]);
        off += p.len();
    });
}

fn mean_nll(flow: &Flow, x: &Matrix, context: Option<&Matrix>) -> Result<f64> {
    Ok(mean_of_negated(&flow.log_prob(x, context)?))
}

/// The mean NLL of per-row log-densities.
fn mean_of_negated(log_p: &[f32]) -> f64 {
    -log_p.iter().map(|&v| v as f64).sum::<f64>() / log_p.len().max(1) as f64
}

/// How far a run is through its schedule: through the step budget, or through the time limit
/// when that comes first (0 at the start, 1 at the end).
fn schedule_fraction(step: usize, budget: usize, seconds: f64, max_seconds: Option<f64>) -> f64 {
    let by_time = max_seconds.map_or(0.0, |limit| seconds / limit);
    (step as f64 / budget.max(1) as f64).max(by_time).min(1.0)
}

/// Writes a checkpoint of a run whose flow holds its current weights and whose best weights
/// are `best`.
fn write_checkpoint(c: &CheckpointConfig, flow: &mut Flow, best: &[f32], trainer: &Trainer, state: &RunState) -> Result<()> {
    let current = params_snapshot(flow);
    params_restore(flow, best);
    flow.transform_mut().set_training(false);
    let saved = checkpoint::save(&c.path, flow, &current, trainer.adam(), state);
    flow.transform_mut().set_training(true);
    params_restore(flow, &current);
    saved
}

/// Noise draws of the validation rows under smoothing: at least this many rows in all...
const VAL_DRAW_ROWS: usize = 2048;
/// ...from at most this many draws of each row.
const MAX_VAL_DRAWS: usize = 32;

/// Per-row means of log-densities laid out as `draws` consecutive copies of the rows.
fn per_row(log_p: &[f32], draws: usize) -> Vec<f32> {
    let n = log_p.len() / draws;
    (0..n).map(|r| ((0..draws).map(|k| log_p[k * n + r] as f64).sum::<f64>() / draws as f64) as f32).collect()
}

/// Whether the per-row log-densities `after` beat `before` by at least `z` standard errors of
/// their paired differences (a non-finite row counts as no gain).
fn significant_gain(before: &[f32], after: &[f32], z: f64) -> bool {
    let gains: Vec<f64> = before.iter().zip(after).map(|(&b, &a)| a as f64 - b as f64).collect();
    if gains.len() < 2 || gains.iter().any(|g| !g.is_finite()) {
        return false;
    }
    let n = gains.len() as f64;
    let mean = gains.iter().sum::<f64>() / n;
    let se = (gains.iter().map(|g| (g - mean).powi(2)).sum::<f64>() / (n - 1.0) / n).sqrt();
    mean > z * se
}

/// Trains `flow` by maximum likelihood on the rows of `x` (with `context` rows if conditional).
///
/// Holds out `val_frac` of the rows (seeded), initialises data-dependent layers from all the
/// rows, runs Adam with gradient clipping, evaluates the validation NLL every
/// epoch (or `eval_every` steps), stops after `patience` evaluations without improvement, and
/// returns the flow with the best validation weights and the history (also recorded in
/// `flow.meta.training`).
///
/// # Errors
/// [`Error::NotEnoughData`] with fewer than 2 training rows; [`Error::InvalidConfig`] for a
/// batch size of 0 or a validation fraction outside `[0, 1)`; [`Error::NonFiniteInput`] for
/// NaN/inf data or a negative or non-finite smoothing factor; [`Error::NonFiniteLoss`] naming the step if training diverges (no NaN weights
/// are ever returned).
pub fn fit(
    flow: Flow,
    x: &Matrix,
    context: Option<&Matrix>,
    config: &FitConfig,
    progress: &mut dyn FnMut(&FitProgress),
) -> Result<(Flow, History)> {
    run(flow, None, x, context, config, progress)
}

/// Goes on with a run that [`fit`] checkpointed (see [`FitConfig::checkpoint`]) at `path`, on
/// the same rows with the same configuration: from the checkpoint's current weights, Adam
/// moments, step and epoch counts, best weights and history. The limits count the whole run
/// (`max_seconds` includes the time before the checkpoint), so the command that started a run
/// resumes it unchanged. Batches after the resume come in a fresh order; the patience count
/// starts again.
///
/// # Errors
/// As [`fit`]; [`Error::BadModel`] for a file that is not a checkpoint;
/// [`Error::InvalidConfig`] when the checkpoint was made on other rows, with another seed or
/// validation fraction, or when `min_gain_z` is set (the starting point is not kept).
pub fn resume_fit(
    path: &Path,
    x: &Matrix,
    context: Option<&Matrix>,
    config: &FitConfig,
    progress: &mut dyn FnMut(&FitProgress),
) -> Result<(Flow, History)> {
    if config.min_gain_z.is_some() {
        return Err(Error::config("a resumed run cannot test its gain over the starting point: set min_gain_z to None"));
    }
    let (flow, resumed) = checkpoint::load(path)?;
    run(flow, Some(resumed), x, context, config, progress)
}

/// The training loop of [`fit`] and [`resume_fit`].
fn run(
    mut flow: Flow,
    resumed: Option<Resumed>,
    x: &Matrix,
    context: Option<&Matrix>,
    config: &FitConfig,
    progress: &mut dyn FnMut(&FitProgress),
) -> Result<(Flow, History)> {
    let clock = Instant::now();
    let seconds_before = resumed.as_ref().map_or(0.0, |r| r.state.seconds);
    let resumed_step_seconds = resumed.as_ref().map_or(0.0, |r| r.state.step_seconds);
    let elapsed = || seconds_before + clock.elapsed().as_secs_f64();
    if config.batch_size == 0 {
        return Err(Error::config("the batch size must be positive"));
    }
    if !(0.0..1.0).contains(&config.val_frac) {
        return Err(Error::config(format!("the validation fraction must be in [0, 1), got {}", config.val_frac)));
    }
    if !(config.lr > 0.0 && config.lr.is_finite()) {
        return Err(Error::config(format!("the learning rate must be positive and finite, got {}", config.lr)));
    }
    // Validates width, NaN/inf and context before any work.
    flow.log_prob(&x.slice_rows(0, x.rows().min(1)), context.map(|c| c.slice_rows(0, c.rows().min(1))).as_ref())?;
    if let Some(c) = context {
        if c.rows() != x.rows() {
            return Err(Error::ContextMismatch(format!("context has {} rows, data has {}", c.rows(), x.rows())));
        }
    }
    let mut rng = Rng::new(config.seed);
    let mut idx = rng.permutation(x.rows());
    let n_val = ((x.rows() as f64) * config.val_frac).round() as usize;
    let n_val = if x.rows() - n_val < 2 { 0 } else { n_val };
    let val_idx: Vec<usize> = idx.drain(..n_val).collect();
    let train_idx = idx;
    if train_idx.len() < 2 {
        return Err(Error::NotEnoughData(format!("{} rows; training needs at least 2", x.rows())));
    }
    if let Some(r) = &resumed {
        if (r.state.rows, r.state.val_rows, r.state.seed) != (x.rows(), n_val, config.seed) {
            return Err(Error::config(format!(
                "the checkpoint was made on {} rows ({} for validation) with seed {}, not {} rows ({n_val}) with seed {}: resume with the same data and settings",
                r.state.rows, r.state.val_rows, r.state.seed, x.rows(), config.seed
            )));
        }
    }
    let x_train = x.select_rows(&train_idx);
    let c_train = context.map(|c| c.select_rows(&train_idx));
    let (x_val, c_val) =
        if n_val > 0 { (x.select_rows(&val_idx), context.map(|c| c.select_rows(&val_idx))) } else { (x_train.clone(), c_train.clone()) };
    // Integer columns: fresh uniform noise per batch; one fixed draw for initialisation and validation.
    let dequantized = !flow.dequantized_columns().is_empty();
    let x_val = if dequantized { flow.dequantize_rows(&x_val, &mut Rng::new(config.seed ^ 0x5eed))? } else { x_val };
    let smoothing = match config.smoothing {
        Some(factor) => Smoothing::new(factor, &x_train)?,
        None => None,
    };
    // Smoothed validation rows: several noise draws of each (at least VAL_DRAW_ROWS in all, at
    // most MAX_VAL_DRAWS each), so that choosing the best step does not hang on one draw.
    let val_draws = if smoothing.is_some() { (VAL_DRAW_ROWS / x_val.rows().max(1)).clamp(1, MAX_VAL_DRAWS) } else { 1 };
    let (x_val, c_val) = match &smoothing {
        Some(s) => {
            let copies: Vec<usize> = (0..val_draws).flat_map(|_| 0..x_val.rows()).collect();
            (s.apply(&x_val.select_rows(&copies), &mut Rng::new(config.seed ^ 0x500e)), c_val.map(|c| c.select_rows(&copies)))
        }
        None => (x_val, c_val),
    };
    // Data-dependent layers (standardisation, whitening, ActNorm) see every row, validation
    // rows included, so that the starting point is the Gaussian of all the rows given.
    let (x_init, c_init) = match config.init_rows {
        Some(n) if n < x.rows() => {
            let rows: Vec<usize> = Rng::new(config.seed ^ 0x1a17).permutation(x.rows()).into_iter().take(n.max(2)).collect();
            (x.select_rows(&rows), context.map(|c| c.select_rows(&rows)))
        }
        _ => (x.clone(), context.cloned()),
    };
    let x_init = if dequantized { flow.dequantize_rows(&x_init, &mut Rng::new(config.seed ^ 0x1417))? } else { x_init };
    let x_init = match &smoothing {
        Some(s) => s.apply(&x_init, &mut Rng::new(config.seed ^ 0x1500)),
        None => x_init,
    };
    if resumed.is_none() {
        flow.data_init(&x_init, c_init.as_ref())?;
    }
    // A resumed run draws batches and noise from streams of its own.
    let resume_step = resumed.as_ref().map_or(0, |r| r.state.step as u64);
    let mut noise_rng = Rng::new(config.seed ^ 0xdeca ^ resume_step.wrapping_mul(0x9e37_79b9_7f4a_7c15));
    if resume_step > 0 {
        rng = Rng::new(config.seed ^ resume_step.wrapping_mul(0xc2b2_ae3d_27d4_eb4f));
    }

    let batch = config.batch_size.min(train_idx.len());
    let steps_per_epoch = train_idx.len().div_ceil(batch);
    let epochs_budget = config.max_epochs.saturating_mul(steps_per_epoch);
    let budget = config.max_steps.map_or(epochs_budget, |s| s.min(epochs_budget));
    if budget == 0 {
        return Err(Error::config("the epoch and step limits must allow at least one step"));
    }
    let eval_every = config.eval_every.unwrap_or(steps_per_epoch).max(1);
    let mut trainer = Trainer::new(&flow, config.lr);
    trainer.grad_clip = config.grad_clip;

    flow.transform_mut().set_training(true);
    let mut history = History::default();
    let start_log_p = flow.log_prob(&x_val, c_val.as_ref())?;
    let initial = (mean_of_negated(&start_log_p), params_snapshot(&flow), 0usize);
    let mut best = initial.clone();
    let (mut step, mut epoch) = (0, 0);
    if let Some(r) = resumed {
        // The checkpoint's flow holds the best weights; go on from the current ones.
        best = (r.state.best_val, best.1, r.state.best_step);
        params_restore(&mut flow, &r.current);
        trainer.adam_mut().restore(&r.adam_m, &r.adam_v, r.state.adam_steps);
        (step, epoch) = (r.state.step, r.state.epoch);
        history.val_nll = r.state.val_nll;
        history.train_nll = r.state.train_nll;
    }
    let mut since_best = 0;
    let mut window = (0.0f64, 0usize);
    let mut order: Vec<usize> = (0..train_idx.len()).collect();
    let mut stopped = "max_epochs";
    let mut last_val = history.val_nll.last().copied();
    let mut last_checkpoint = Instant::now();
    let mut step_seconds = resumed_step_seconds;
    let run_state =
        |step: usize, epoch: usize, best: &(f64, Vec<f32>, usize), history: &History, trainer: &Trainer, step_seconds: f64| RunState {
            step,
            epoch,
            seconds: elapsed(),
            best_val: best.0,
            best_step: best.2,
            adam_steps: trainer.adam().state().2,
            val_nll: history.val_nll.clone(),
            train_nll: history.train_nll.clone(),
            seed: config.seed,
            rows: x.rows(),
            val_rows: n_val,
            step_seconds,
        };
    'outer: while step < budget {
        epoch += 1;
        rng.shuffle(&mut order);
        for chunk in order.chunks(batch) {
            if config.max_seconds.is_some_and(|limit| elapsed() >= limit) {
                stopped = "max_seconds";
                break 'outer;
            }
            if step >= budget {
                break 'outer;
            }
            if let LrSchedule::Cosine = config.schedule {
                let frac = schedule_fraction(step, budget, elapsed(), config.max_seconds);
                trainer.set_lr((config.lr as f64 * 0.5 * (1.0 + (std::f64::consts::PI * frac).cos())) as f32);
            }
            let step_started = Instant::now();
            let xb = x_train.select_rows(chunk);
            let xb = if dequantized { flow.dequantize_rows(&xb, &mut noise_rng)? } else { xb };
            let xb = match &smoothing {
                Some(s) => s.apply(&xb, &mut noise_rng),
                None => xb,
            };
            let cb = c_train.as_ref().map(|c| c.select_rows(chunk));
            step += 1;
            let loss = match trainer.step(&mut flow, &xb, cb.as_ref()) {
                Err(Error::NonFiniteLoss { .. }) if config.stop_on_divergence => {
                    // Ends the run like any other stop: the best weights are kept.
                    stopped = "diverged";
                    break 'outer;
                }
                Err(Error::NonFiniteLoss { .. }) => {
                    flow.transform_mut().set_training(false);
                    params_restore(&mut flow, &best.1);
                    return Err(Error::NonFiniteLoss { step });
                }
                other => other?,
            };
            step_seconds += step_started.elapsed().as_secs_f64();
            window.0 += loss;
            window.1 += 1;
            if step % eval_every == 0 || step == budget {
                let val = mean_nll(&flow, &x_val, c_val.as_ref())?;
                let train = window.0 / window.1 as f64;
                history.val_nll.push(val);
                history.train_nll.push(train);
                window = (0.0, 0);
                last_val = Some(val);
                if val.is_finite() && val < best.0 {
                    best = (val, params_snapshot(&flow), step);
                    since_best = 0;
                } else {
                    since_best += 1;
                }
                if config.patience.is_some_and(|p| since_best >= p) {
                    stopped = "early_stopping";
                    progress(&FitProgress { step, total_steps: budget, epoch, train_nll: train, val_nll: last_val, seconds: elapsed() });
                    break 'outer;
                }
            }
            let running = if window.1 > 0 { window.0 / window.1 as f64 } else { *history.train_nll.last().unwrap_or(&loss) };
            progress(&FitProgress { step, total_steps: budget, epoch, train_nll: running, val_nll: last_val, seconds: elapsed() });
            if let Some(c) = config.checkpoint.as_ref().filter(|c| last_checkpoint.elapsed().as_secs_f64() >= c.every_seconds) {
                write_checkpoint(c, &mut flow, &best.1, &trainer, &run_state(step, epoch, &best, &history, &trainer, step_seconds))?;
                last_checkpoint = Instant::now();
            }
        }
    }
    // A stop between evaluations (the time limit) still evaluates its last weights, so the
    // steps since the last evaluation are not thrown away. (Diverged weights are not finite.)
    if window.1 > 0 && stopped != "diverged" {
        let val = mean_nll(&flow, &x_val, c_val.as_ref())?;
        history.val_nll.push(val);
        history.train_nll.push(window.0 / window.1 as f64);
        if val.is_finite() && val < best.0 {
            best = (val, params_snapshot(&flow), step);
        }
    }
    if let Some(c) = &config.checkpoint {
        write_checkpoint(c, &mut flow, &best.1, &trainer, &run_state(step, epoch, &best, &history, &trainer, step_seconds))?;
    }
    if stopped == "max_epochs" && config.max_steps.is_some_and(|s| step >= s) {
        stopped = "max_steps";
    }
    flow.transform_mut().set_training(false);
    params_restore(&mut flow, &best.1);
    if let Some(z) = config.min_gain_z.filter(|_| n_val > 0 && best.2 > 0) {
        let after = flow.log_prob(&x_val, c_val.as_ref())?;
        if !significant_gain(&per_row(&start_log_p, val_draws), &per_row(&after, val_draws), z) {
            params_restore(&mut flow, &initial.1);
            best = initial;
        }
    }
    // Running averages lag the parameters (and belong to the last step, not the restored
    // best one): measure the statistics exactly for the final parameters.
    flow.recalibrate(&x_init, c_init.as_ref())?;
    history.summary = TrainingSummary {
        steps: step,
        epochs: epoch,
        train_rows: train_idx.len(),
        val_rows: n_val,
        best_val_nll: best.0,
        best_step: best.2,
        final_train_nll: history.train_nll.last().copied().unwrap_or(best.0),
        stopped: stopped.into(),
        seconds: elapsed(),
        step_seconds,
        lr: config.lr,
        batch_size: batch,
        seed: config.seed,
    };
    flow.meta.training = Some(history.summary.clone());
    Ok((flow, history))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_schedule_follows_whichever_limit_comes_first() {
        assert_eq!(schedule_fraction(50, 100, 1.0, None), 0.5);
        assert_eq!(schedule_fraction(10, 100, 30.0, Some(60.0)), 0.5, "time first");
        assert_eq!(schedule_fraction(90, 100, 30.0, Some(60.0)), 0.9, "steps first");
        assert_eq!(schedule_fraction(10, 100, 90.0, Some(60.0)), 1.0, "never past the end");
    }
}
