//! Training a whole continuous flow: the rows split into training and validation, the columns
//! standardised and integer columns dequantised as in [`crate::train::fit`], a
//! [`FlowMatching`] model trained on them, and a [`Flow`] returned whose log-density, samples,
//! codes and model file are those of the raw data, with the run's summary.

use std::time::Instant;

use super::FlowMatchingConfig;
use crate::bijection::{Bounds, Chain, ContinuousFlow, Dequantize, Standardize};
use crate::engine::{Matrix, Rng};
use crate::flows::FlowMatching;
use crate::ode::Solver;
use crate::train::{FitProgress, History, TrainingSummary};
use crate::{Bijection, Error, Flow, Result};

/// Most training rows whose exact NLL is reported after training.
const TRAIN_NLL_ROWS: usize = 1000;

/// Trains a continuous flow on the rows of `x` (with their `context` rows) by flow matching,
/// its maps solved with `solver`. A share `config.val_frac` of the rows is held out and its
/// exact NLL reported (as `best_val_nll`; the training NLL is that of at most 1,000 training
/// rows). `progress` hears after every step; its `train_nll` is the flow-matching loss (mean
/// squared velocity error) over the recent steps, not an NLL: flow matching never computes
/// one while training.
///
/// # Errors
/// [`Error::InvalidConfig`] for a validation share outside `[0, 1)` or a dequantised column
/// out of range; [`Error::NotEnoughData`] for fewer than 2 training rows;
/// [`Error::ConstantColumn`] for a column without variance; [`Error::ContextMismatch`]; as
/// [`FlowMatching::fit`] otherwise.
pub fn fit_flow_matching(
    x: &Matrix,
    context: Option<&Matrix>,
    config: &FlowMatchingConfig,
    solver: Solver,
    progress: &mut dyn FnMut(&FitProgress),
) -> Result<(Flow, History)> {
    let clock = Instant::now();
    if !(0.0..1.0).contains(&config.val_frac) {
        return Err(Error::config(format!("the validation fraction must be in [0, 1), got {}", config.val_frac)));
    }
    if let Some(c) = context {
        if c.rows() != x.rows() {
            return Err(Error::ContextMismatch(format!("context has {} rows, data has {}", c.rows(), x.rows())));
        }
    }
    let dequantize = Dequantize::new(x.cols(), config.dequantize.clone())?;
    let bounds = bounds_of(x, config)?;
    let to_real = |rows: &Matrix| -> Result<Matrix> {
        match &bounds {
            Some(b) => Ok(b.inverse_and_log_det(rows, None)?.0),
            None => Ok(rows.clone()),
        }
    };
    let mut rng = Rng::new(config.seed);
    let mut idx = rng.permutation(x.rows());
    let n_val = ((x.rows() as f64) * config.val_frac).round() as usize;
    let n_val = if x.rows().saturating_sub(n_val) < 2 { 0 } else { n_val };
    let val_idx: Vec<usize> = idx.drain(..n_val).collect();
    if idx.len() < 2 {
        return Err(Error::NotEnoughData(format!("{} rows; training needs at least 2", x.rows())));
    }
    let (x_train, c_train) = (x.select_rows(&idx), context.map(|c| c.select_rows(&idx)));
    // Statistics from one noise draw of the integer columns; then each batch gets fresh noise,
    // the logit of its bounded columns and the standardisation.
    let mut noise_rng = Rng::new(config.seed ^ 0x5eed);
    let mut standardize = Standardize::new(x.cols());
    standardize.data_init(&to_real(&dequantized(&x_train, &config.dequantize, &mut noise_rng))?, None)?;
    let mut prepare = |batch: &mut Matrix, rng: &mut Rng| -> Result<()> {
        *batch = standardize.inverse_and_log_det(&to_real(&dequantized(batch, &config.dequantize, rng))?, None)?.0;
        Ok(())
    };
    let mut model = FlowMatching::new(x.cols(), context.map_or(0, |c| c.cols()), config)?;
    let mut recent = Vec::with_capacity(config.steps);
    let epoch_rows = idx.len();
    let steps_clock = Instant::now();
    model.fit_prepared(&x_train, c_train.as_ref(), config, &mut prepare, &mut |step, loss| {
        recent.push(loss as f64);
        let window = &recent[recent.len().saturating_sub(100)..];
        progress(&FitProgress {
            step,
            total_steps: config.steps,
            epoch: step * config.batch_size / epoch_rows + 1,
            train_nll: window.iter().sum::<f64>() / window.len() as f64,
            val_nll: None,
            seconds: clock.elapsed().as_secs_f64(),
        });
    })?;
    let step_seconds = steps_clock.elapsed().as_secs_f64();
    let layers: Vec<Box<dyn Bijection>> = vec![Box::new(ContinuousFlow::new(model, solver)), Box::new(standardize)];
    let mut flow = Flow::new(Box::new(Chain::new(layers)?));
    if let Some(b) = bounds {
        flow = flow.with_data_layer(Box::new(b))?;
    }
    if !config.dequantize.is_empty() {
        flow = flow.with_data_layer(Box::new(dequantize))?;
    }
    flow.meta.name = "fm".into();
    let nll = |rows: &Matrix, ctx: Option<&Matrix>| -> Result<f64> {
        let lp = flow.log_prob(&dequantized(rows, &config.dequantize, &mut Rng::new(config.seed ^ 0xd1ce)), ctx)?;
        Ok(-lp.iter().map(|&v| v as f64).sum::<f64>() / lp.len() as f64)
    };
    let shown = idx.len().min(TRAIN_NLL_ROWS);
    let train_nll = nll(&x_train.slice_rows(0, shown), c_train.as_ref().map(|c| c.slice_rows(0, shown)).as_ref())?;
    let val_nll = if n_val > 0 { nll(&x.select_rows(&val_idx), context.map(|c| c.select_rows(&val_idx)).as_ref())? } else { train_nll };
    let summary = TrainingSummary {
        steps: config.steps,
        epochs: (config.steps * config.batch_size).div_ceil(epoch_rows),
        train_rows: epoch_rows,
        val_rows: n_val,
        best_val_nll: val_nll,
        best_step: config.steps,
        final_train_nll: train_nll,
        stopped: "max_steps".into(),
        seconds: clock.elapsed().as_secs_f64(),
        step_seconds,
        lr: config.lr,
        batch_size: config.batch_size,
        seed: config.seed,
    };
    flow.meta.training = Some(summary.clone());
    Ok((flow, History { val_nll: vec![val_nll], train_nll: vec![train_nll], summary }))
}

/// The bounds layer of `config.bounds` (none when empty), checked against the data: every value
/// inside its interval (an error names the row and column) and, for an integer column, room for
/// its dequantisation noise (`v + u` with `u < 1` below the upper bound).
fn bounds_of(x: &Matrix, config: &FlowMatchingConfig) -> Result<Option<Bounds>> {
    if config.bounds.is_empty() {
        return Ok(None);
    }
    if config.bounds.len() != x.cols() {
        return Err(Error::config(format!("{} bounds for {} columns", config.bounds.len(), x.cols())));
    }
    let b = Bounds::new(config.bounds.clone())?;
    b.inverse_and_log_det(x, None)?;
    for &j in &config.dequantize {
        if let Some(Some(interval)) = config.bounds.get(j) {
            let top = (0..x.rows()).map(|r| x.get(r, j)).fold(f32::MIN, f32::max);
            if top + 1.0 > interval.hi {
                return Err(Error::config(format!(
                    "column {}: integer values up to {top} are dequantised to v + u with u in [0, 1), past the upper bound {}; raise it to at least {}",
                    j + 1,
                    interval.hi,
                    top + 1.0
                )));
            }
        }
    }
    Ok(Some(b))
}

/// `x` with one uniform draw added to each of `columns`.
fn dequantized(x: &Matrix, columns: &[usize], rng: &mut Rng) -> Matrix {
    let mut out = x.clone();
    for r in 0..out.rows() {
        for &j in columns {
            out.row_mut(r)[j] += rng.uniform() as f32;
        }
    }
    out
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::bijection::{BijectionSpec, Direction, Interval, Tape};

    /// Rows of a correlated pair with columns far from standard.
    fn raw_rows(n: usize, rng: &mut Rng) -> Matrix {
        let data = (0..n)
            .flat_map(|_| {
                let (a, b) = (rng.normal(), rng.normal());
                [100.0 + 5.0 * a as f32, -3.0 + 0.01 * (0.6 * a + 0.8 * b) as f32]
            })
            .collect();
        Matrix::from_vec(n, 2, data)
    }

    #[test]
    fn a_fitted_flow_has_every_workflow_and_survives_its_model_file() {
        let x = raw_rows(4000, &mut Rng::new(3));
        let config = FlowMatchingConfig { steps: 600, ..Default::default() };
        let mut steps_heard = 0;
        let (flow, history) = fit_flow_matching(&x, None, &config, Solver::adaptive(1e-5), &mut |p| steps_heard = p.step).unwrap();
        assert_eq!(steps_heard, 600);
        let s = &history.summary;
        assert_eq!((s.train_rows, s.val_rows, s.steps), (3600, 400, 600));
        // A correlated Gaussian of these scales has entropy ln 2πe + ln 5 + ln(0.01·0.8) = -0.381;
        // 600 steps get within a tenth.
        assert!((s.best_val_nll - -0.381).abs() < 0.1, "{s:?}");
        assert_eq!(flow.meta.training.as_ref(), Some(s));
        let probe = x.slice_rows(0, 3);
        let lp = flow.log_prob(&probe, None).unwrap();
        let spec = flow.transform().spec();
        assert!(matches!(&spec, BijectionSpec::Chain { layers } if matches!(layers[0], BijectionSpec::Continuous(_))), "{spec:?}");
        let z = flow.encode(&probe, None).unwrap();
        let back = flow.decode(&z, None).unwrap();
        for (a, b) in back.as_slice().iter().zip(probe.as_slice()) {
            assert!((a - b).abs() < 1e-3 * (1.0 + b.abs()), "{a} vs {b}");
        }
        let samples = flow.sample(2000, None, &mut Rng::new(4)).unwrap();
        let mean0 = (0..2000).map(|r| samples.get(r, 0) as f64).sum::<f64>() / 2000.0;
        assert!((mean0 - 100.0).abs() < 0.5, "sample mean {mean0}");
        let dir = std::env::temp_dir().join(format!("normflow-fm-{}", std::process::id()));
        std::fs::create_dir_all(&dir).unwrap();
        let path = dir.join("fm.safetensors");
        flow.save(&path).unwrap();
        let mut loaded = Flow::load(&path).unwrap();
        assert_eq!(loaded.log_prob(&probe, None).unwrap(), lp);
        assert_eq!(loaded.meta.name, "fm");
        // Another solver for the loaded flow: the same density to the solvers' accuracy.
        assert!(loaded.set_solver(Solver::Rk4 { steps: 64 }));
        for (a, b) in loaded.log_prob(&probe, None).unwrap().iter().zip(&lp) {
            assert!((a - b).abs() < 1e-3, "{a} vs {b}");
        }
        std::fs::remove_dir_all(&dir).ok();
        // Training goes through flow matching, not the ODE's gradients.
        let layer = ContinuousFlow::new(FlowMatching::new(2, 0, &config).unwrap(), Solver::Rk4 { steps: 4 });
        let e = layer.backward(Direction::Forward, &mut Tape::new(), Matrix::zeros(1, 2), &[0.0], &mut []);
        assert!(matches!(e, Err(Error::Unsupported(_))));
    }

    #[test]
    fn integer_columns_are_dequantised_and_recorded() {
        // Counts 0..=4 in the first column: without noise a continuous density would pile up
        // on the integers and its NLL would run off to minus infinity.
        let mut rng = Rng::new(8);
        let data = (0..3000).flat_map(|_| [rng.below(5) as f32, rng.normal() as f32]).collect();
        let x = Matrix::from_vec(3000, 2, data);
        let config = FlowMatchingConfig { steps: 800, dequantize: vec![0], ..Default::default() };
        let (flow, history) = fit_flow_matching(&x, None, &config, Solver::adaptive(1e-5), &mut |_| {}).unwrap();
        assert_eq!(flow.dequantized_columns(), vec![0]);
        // Uniform on [0, 5) times a standard normal: entropy ln 5 + 1.419 = 3.028.
        let nll = history.summary.best_val_nll;
        assert!(nll > 3.0 - 0.05 && nll < 3.028 + 0.25, "validation NLL {nll}");
    }

    #[test]
    fn bounded_columns_keep_their_mass_inside() {
        // A uniform column on (0, 1) (entropy 0) beside counts 0..=3 bounded by [0, 4]
        // (dequantised: uniform on [0, 4), entropy ln 4).
        let mut rng = Rng::new(12);
        let data = (0..4000).flat_map(|_| [rng.uniform() as f32, rng.below(4) as f32]).collect();
        let x = Matrix::from_vec(4000, 2, data);
        let unit = Some(Interval { lo: 0.0, hi: 1.0 });
        let config = FlowMatchingConfig {
            steps: 1500,
            dequantize: vec![1],
            bounds: vec![unit, Some(Interval { lo: 0.0, hi: 4.0 })],
            ..Default::default()
        };
        let (flow, history) = fit_flow_matching(&x, None, &config, Solver::adaptive(1e-5), &mut |_| {}).unwrap();
        let nll = history.summary.best_val_nll;
        let exact = 4f64.ln();
        assert!(nll > exact - 0.05 && nll < exact + 0.15, "validation NLL {nll}, entropy {exact}");
        let samples = flow.sample(2000, None, &mut Rng::new(2)).unwrap();
        for r in 0..2000 {
            let (a, b) = (samples.get(r, 0), samples.get(r, 1));
            assert!((0.0..=1.0).contains(&a) && (0.0..=4.0).contains(&b), "sample {a}, {b}");
        }
        let outside = Matrix::from_vec(1, 2, vec![1.5, 1.0]);
        assert!(matches!(flow.log_prob(&outside, None), Err(Error::OutOfBounds { row: 1, column: 1, .. })));
        // Round trip through the model file keeps the bounds.
        let path = std::env::temp_dir().join(format!("nf-fm-bounds-{}.safetensors", std::process::id()));
        flow.save(&path).unwrap();
        let back = Flow::load(&path).unwrap();
        let _ = std::fs::remove_file(&path);
        let probe = x.slice_rows(0, 5);
        assert_eq!(back.log_prob(&probe, None).unwrap(), flow.log_prob(&probe, None).unwrap());
        // Data outside its bounds, and integers without room for their noise, are refused.
        let tight = FlowMatchingConfig { bounds: vec![unit, Some(Interval { lo: 0.0, hi: 3.5 })], ..config.clone() };
        assert!(matches!(fit_flow_matching(&x, None, &tight, Solver::adaptive(1e-5), &mut |_| {}), Err(Error::InvalidConfig(_))));
        let narrow = FlowMatchingConfig { bounds: vec![Some(Interval { lo: 0.0, hi: 0.5 }), None], ..config };
        assert!(matches!(fit_flow_matching(&x, None, &narrow, Solver::adaptive(1e-5), &mut |_| {}), Err(Error::OutOfBounds { .. })));
    }

    #[test]
    fn bad_settings_are_errors() {
        let x = raw_rows(100, &mut Rng::new(1));
        let bad = |c: FlowMatchingConfig| fit_flow_matching(&x, None, &c, Solver::Euler { steps: 2 }, &mut |_| {}).unwrap_err();
        assert!(matches!(bad(FlowMatchingConfig { val_frac: 1.0, ..Default::default() }), Error::InvalidConfig(_)));
        assert!(matches!(bad(FlowMatchingConfig { dequantize: vec![2], ..Default::default() }), Error::InvalidConfig(_)));
        let ctx = Matrix::zeros(100, 1);
        let e = fit_flow_matching(
            &x,
            Some(&ctx),
            &FlowMatchingConfig { coupling: super::super::Coupling::MinibatchOt, steps: 1, ..Default::default() },
            Solver::Euler { steps: 2 },
            &mut |_| {},
        )
        .unwrap_err();
        assert!(matches!(e, Error::InvalidConfig(_)), "{e}");
    }
}
