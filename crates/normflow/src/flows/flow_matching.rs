//! Continuous normalizing flows trained by conditional flow matching (Lipman et al. 2023) on
//! the straight ("optimal transport") path: `x_t = (1 − (1 − σ)t)·x₀ + t·x₁` from a standard
//! normal `x₀` at `t = 0` to the data `x₁` at `t = 1`, whose velocity `x₁ − (1 − σ)·x₀` the
//! field learns by least squares: no ODE is solved in training. Sampling and decoding integrate
//! `dx/dt = v(x, t)` from 0 to 1, encoding from 1 to 0, and the log-density is exact through the
//! instantaneous change of variables `d log p/dt = −tr(∂v/∂x)`, integrated beside the state.

use super::assignment::assign;
use std::sync::atomic::{AtomicBool, Ordering};

use crate::engine::threads::{sum_parts_into, worker_count};
use crate::engine::{map_row_ranges, Adam, Matrix, Rng};
use crate::nn::{TimeFeatures, VectorField};
use crate::ode::{self, Report, Solver};
use crate::{Error, Result};

/// How to build and train a flow-matching model.
#[derive(Clone, Debug, PartialEq)]
pub struct FlowMatchingConfig {
    /// Hidden layer widths of the velocity field.
    pub hidden: Vec<usize>,
    /// Time frequencies of the field's input features.
    pub frequencies: usize,
    /// Which multiples of `π·t` those features take.
    pub time_features: TimeFeatures,
    /// Width of the path at the data end (`σ_min`).
    pub sigma_min: f32,
    /// Optimisation steps.
    pub steps: usize,
    /// Rows per step.
    pub batch_size: usize,
    /// Adam's learning rate (decayed to zero along a cosine over the steps).
    pub lr: f32,
    /// Seed of the initial weights and the training draws.
    pub seed: u64,
    /// How each batch's noise rows are paired with its data rows.
    pub coupling: Coupling,
    /// The distribution of the training times `t`.
    pub time_sampling: TimeSampling,
    /// Share of the rows [`crate::flows::fit_flow_matching`] holds out to report a validation
    /// NLL (not used by [`FlowMatching::fit`]).
    pub val_frac: f64,
    /// Integer-valued data columns (0-based) that [`crate::flows::fit_flow_matching`]
    /// dequantises with fresh uniform noise per batch (see [`crate::bijection::Dequantize`]).
    pub dequantize: Vec<usize>,
    /// Bounded data columns (one entry per column, `None` for unbounded; empty: none), which
    /// [`crate::flows::fit_flow_matching`] takes to the real line by a scaled logit (see
    /// [`crate::bijection::Bounds`]) before the flow sees them.
    pub bounds: Vec<Option<crate::bijection::Interval>>,
}

impl Default for FlowMatchingConfig {
    fn default() -> Self {
        Self {
            hidden: vec![64, 64],
            frequencies: 4,
            time_features: TimeFeatures::default(),
            sigma_min: 1e-4,
            steps: 3000,
            batch_size: 256,
            lr: 2e-3,
            seed: 0,
            coupling: Coupling::Independent,
            time_sampling: TimeSampling::Uniform,
            val_frac: 0.1,
            dequantize: Vec::new(),
            bounds: Vec::new(),
        }
    }
}

/// How flow matching pairs noise with data in a batch.
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq)]
pub enum Coupling {
    /// Independent draws (Lipman et al. 2023).
    #[default]
    Independent,
    /// Minibatch optimal transport (Tong et al. 2023): the batch's noise rows are matched to
    /// its data rows by the exact assignment of least total squared distance, so the straight
    /// paths cross less and the ODE needs fewer steps. Unconditional models only.
    MinibatchOt,
}

/// The distribution of the times at which flow matching fits the field. Any distribution with a
/// positive density on `(0, 1)` has the same best field; it decides where the field's capacity
/// and the optimiser's steps go.
#[derive(Clone, Copy, Debug, Default, PartialEq)]
pub enum TimeSampling {
    /// Uniform on `[0, 1)` (Lipman et al. 2023).
    #[default]
    Uniform,
    /// `t = sigmoid(mean + std·ε)` with `ε` standard normal (Esser et al. 2024). With the mean
    /// above 0 more steps go to the data end of the path, where a density with sharp edges (the
    /// checkerboard) takes shape: there it lowered the test NLL by about 0.1 nats at the same
    /// steps (`bench/fm/toys.py`).
    LogitNormal {
        /// Mean of the logit of `t`.
        mean: f32,
        /// Standard deviation of the logit of `t` (positive).
        std: f32,
    },
}

impl TimeSampling {
    /// Logit-normal times, checked.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for a non-finite mean or a standard deviation that is not a
    /// positive number.
    pub fn logit_normal(mean: f32, std: f32) -> Result<Self> {
        let sampling = Self::LogitNormal { mean, std };
        sampling.check()?;
        Ok(sampling)
    }

    /// One draw of `t`.
    pub fn draw(&self, rng: &mut Rng) -> f32 {
        match *self {
            Self::Uniform => rng.uniform() as f32,
            Self::LogitNormal { mean, std } => 1.0 / (1.0 + (-(mean as f64 + std as f64 * rng.normal())).exp()) as f32,
        }
    }

    fn check(&self) -> Result<()> {
        match *self {
            Self::LogitNormal { mean, std } if !(mean.is_finite() && std.is_finite() && std > 0.0) => Err(Error::InvalidConfig(format!(
                "logit-normal times need a finite mean and a positive standard deviation, got {mean} and {std}"
            ))),
            _ => Ok(()),
        }
    }
}

/// A continuous flow: a velocity field trained by flow matching.
#[derive(Clone, Debug)]
pub struct FlowMatching {
    field: VectorField,
    sigma_min: f32,
}

/// Rows per worker below which a pass stays on fewer threads.
const MIN_ROWS_PER_THREAD: usize = 64;

/// Parameters per thread below which the gradients are summed on one thread.
const MIN_PARAMS_PER_THREAD: usize = 8_192;

impl FlowMatching {
    /// An untrained model over `dim` values with `context_dim` context values.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for a zero dimension, no hidden layer or a `σ_min` outside
    /// `[0, 1)`.
    pub fn new(dim: usize, context_dim: usize, config: &FlowMatchingConfig) -> Result<Self> {
        if dim == 0 || config.hidden.is_empty() || config.hidden.contains(&0) {
            return Err(Error::InvalidConfig("flow matching needs a dimension and non-empty hidden layers".into()));
        }
        if !(0.0..1.0).contains(&config.sigma_min) {
            return Err(Error::InvalidConfig(format!("sigma_min must be in [0, 1), got {}", config.sigma_min)));
        }
        let mut rng = Rng::new(config.seed);
        Ok(Self {
            field: VectorField::new(dim, context_dim, &config.hidden, config.frequencies, config.time_features, &mut rng),
            sigma_min: config.sigma_min,
        })
    }

    /// The velocity field.
    pub fn field(&self) -> &VectorField {
        &self.field
    }

    /// The velocity field, mutable (its parameters).
    pub fn field_mut(&mut self) -> &mut VectorField {
        &mut self.field
    }

    /// Width of the probability path at the data end.
    pub fn sigma_min(&self) -> f32 {
        self.sigma_min
    }

    /// Maps the rows of `x` from time `t0` to `t1` and returns them with the log-determinant
    /// of the map, `∫ tr(∂v/∂x) dt` from `t0` to `t1`, per row.
    ///
    /// # Errors
    /// Bad input (wrong width, non-finite values, wrong context) or a failed integration.
    pub fn integrate(&self, x: &Matrix, context: Option<&Matrix>, t0: f64, t1: f64, solver: Solver) -> Result<(Matrix, Vec<f32>)> {
        self.check(x, context)?;
        let (y, log_det, _) = self.flow(x, context, t0, t1, true, solver)?;
        Ok((y, log_det))
    }

    /// Data dimension.
    pub fn dim(&self) -> usize {
        self.field.dim()
    }

    fn check(&self, x: &Matrix, context: Option<&Matrix>) -> Result<()> {
        if x.cols() != self.dim() {
            return Err(Error::DimensionMismatch { what: "flow-matching input".into(), got: x.cols(), expected: self.dim() });
        }
        if let Some((r, c)) = (0..x.rows()).flat_map(|r| (0..x.cols()).map(move |c| (r, c))).find(|&(r, c)| !x.get(r, c).is_finite()) {
            return Err(Error::NonFiniteInput { what: "flow-matching input".into(), row: r + 1, column: c + 1 });
        }
        match (context, self.field.context_dim()) {
            (None, 0) => Ok(()),
            (Some(c), n) if n > 0 && c.cols() == n && c.rows() == x.rows() => Ok(()),
            (c, n) => Err(Error::ContextMismatch(format!(
                "the model takes {n} context values per row; got {}",
                c.map_or("none".to_string(), |c| format!("{} rows of {}", c.rows(), c.cols()))
            ))),
        }
    }

    /// Trains the field on the rows of `x` (with their `context` rows) by conditional flow
    /// matching; returns the mean loss of each step.
    ///
    /// # Errors
    /// As [`FlowMatching::new`]'s checks of the input; [`Error::NonFiniteLoss`] if training
    /// diverges; [`Error::InvalidConfig`] for minibatch OT with a context.
    pub fn fit(&mut self, x: &Matrix, context: Option<&Matrix>, config: &FlowMatchingConfig) -> Result<Vec<f32>> {
        self.fit_prepared(x, context, config, &mut |_, _| Ok(()), &mut |_, _| {})
    }

    /// [`FlowMatching::fit`], calling `on_step(step, loss)` after every step (1-based): for
    /// progress reports and per-step timing.
    ///
    /// # Errors
    /// As [`FlowMatching::fit`].
    pub fn fit_observed(
        &mut self,
        x: &Matrix,
        context: Option<&Matrix>,
        config: &FlowMatchingConfig,
        on_step: &mut dyn FnMut(usize, f32),
    ) -> Result<Vec<f32>> {
        self.fit_prepared(x, context, config, &mut |_, _| Ok(()), on_step)
    }

    /// [`FlowMatching::fit`] on batches that `prepare` maps in place after they are drawn from
    /// `x` (fresh dequantisation noise, a logit for bounded columns, standardisation: `x` holds
    /// raw rows and the flow learns the prepared ones), calling `on_step(step, loss)` after
    /// every step.
    pub(crate) fn fit_prepared(
        &mut self,
        x: &Matrix,
        context: Option<&Matrix>,
        config: &FlowMatchingConfig,
        prepare: &mut dyn FnMut(&mut Matrix, &mut Rng) -> Result<()>,
        on_step: &mut dyn FnMut(usize, f32),
    ) -> Result<Vec<f32>> {
        self.check(x, context)?;
        config.time_sampling.check()?;
        if x.rows() == 0 || config.batch_size == 0 {
            return Err(Error::NotEnoughData("flow matching needs rows and a positive batch size".into()));
        }
        if config.coupling == Coupling::MinibatchOt && context.is_some() {
            return Err(Error::InvalidConfig("minibatch OT couplings pair rows across contexts: use them without a context".into()));
        }
        let (d, n, batch) = (self.dim(), x.rows(), config.batch_size);
        let mut rng = Rng::new(config.seed ^ 0x5eed_f10a);
        let mut adam = Adam::new(self.field.params().len(), config.lr);
        let mut losses = Vec::with_capacity(config.steps);
        let mut x1 = Matrix::zeros(batch, d);
        let mut ctx = context.map(|c| Matrix::zeros(batch, c.cols()));
        let (mut x0, mut t) = (vec![0.0f32; batch * d], vec![0.0f32; batch]);
        for step in 0..config.steps {
            for r in 0..batch {
                let i = rng.below(n);
                x1.row_mut(r).copy_from_slice(x.row(i));
                if let (Some(dst), Some(src)) = (ctx.as_mut(), context) {
                    dst.row_mut(r).copy_from_slice(src.row(i));
                }
                t[r] = config.time_sampling.draw(&mut rng);
            }
            prepare(&mut x1, &mut rng)?;
            rng.fill_normal(&mut x0);
            if config.coupling == Coupling::MinibatchOt {
                x1 = pair_by_transport(&x0, &x1);
            }
            let (loss, grads) = self.loss_and_gradient(&x1, &x0, &t, ctx.as_ref());
            if !loss.is_finite() {
                return Err(Error::NonFiniteLoss { step: step + 1 });
            }
            adam.lr = config.lr * 0.5 * (1.0 + (std::f32::consts::PI * step as f32 / config.steps as f32).cos());
            adam.begin_step();
            adam.update(0, self.field.params_mut(), &grads, 1.0);
            losses.push(loss);
            on_step(step + 1, loss);
        }
        Ok(losses)
    }

    /// The flow-matching loss `mean over rows of |v(x_t, t) − u_t|²` for data rows `x1`, noise
    /// `x0` and times `t`, and its gradient, the rows split over the workers; the loss is NaN
    /// when any gradient is not finite.
    fn loss_and_gradient(&self, x1: &Matrix, x0: &[f32], t: &[f32], context: Option<&Matrix>) -> (f32, Vec<f32>) {
        let (d, rows) = (self.dim(), x1.rows());
        let keep = 1.0 - self.sigma_min;
        let parts = map_row_ranges(rows, MIN_ROWS_PER_THREAD, |range| {
            let m = range.len();
            let mut xt = Matrix::zeros(m, d);
            let mut target = vec![0.0f32; m * d];
            for (j, r) in range.clone().enumerate() {
                let (a, b, tr) = (x1.row(r), &x0[r * d..(r + 1) * d], t[r]);
                for i in 0..d {
                    xt.row_mut(j)[i] = (1.0 - keep * tr) * b[i] + tr * a[i];
                    target[j * d + i] = a[i] - keep * b[i];
                }
            }
            let ctx = context.map(|c| Matrix::from_vec(m, c.cols(), c.as_slice()[range.start * c.cols()..range.end * c.cols()].to_vec()));
            let (v, cache) = self.field.velocity_cached(&xt, &t[range.clone()], ctx.as_ref());
            let mut loss = 0.0f64;
            let grad: Vec<f32> = v
                .as_slice()
                .iter()
                .zip(&target)
                .map(|(&v, &u)| {
                    loss += ((v - u) as f64).powi(2);
                    2.0 * (v - u) / rows as f32
                })
                .collect();
            let mut grads = vec![0.0f32; self.field.params().len()];
            self.field.backward(&cache, Matrix::from_vec(m, d, grad), &mut grads);
            (loss, grads)
        });
        let total: f64 = parts.iter().map(|(loss, _)| loss).sum();
        let n = self.field.params().len();
        let mut grads = vec![0.0f32; n];
        // The parts' gradients summed, and checked, over the cores (a serial pass over the
        // parameters left the other cores waiting for a twentieth of an M-size step).
        let chunks = worker_count(n, MIN_PARAMS_PER_THREAD);
        let finite: Vec<AtomicBool> = (0..chunks).map(|_| AtomicBool::new(true)).collect();
        sum_parts_into(&mut grads, &parts, &|(_, g)| g.as_slice(), chunks, &|c, g| {
            finite[c].store(g.iter().all(|v| v.is_finite()), Ordering::Relaxed)
        });
        let loss = (total / rows as f64) as f32;
        // A non-finite gradient shows as a non-finite loss to the caller.
        let all_finite = finite.iter().all(|f| f.load(Ordering::Relaxed));
        (if all_finite { loss } else { f32::NAN }, grads)
    }

    /// Integrates the rows of `x` from `t0` to `t1`, with the trace's integral beside them when
    /// `trace` (then the returned vector holds it per row).
    fn flow(
        &self,
        x: &Matrix,
        context: Option<&Matrix>,
        t0: f64,
        t1: f64,
        trace: bool,
        solver: Solver,
    ) -> Result<(Matrix, Vec<f32>, Report)> {
        let (d, rows) = (self.dim(), x.rows());
        let extra = if trace { rows } else { 0 };
        let mut state = x.as_slice().to_vec();
        state.resize(rows * d + extra, 0.0);
        let mut rhs = |t: f64, y: &[f32], out: &mut [f32]| -> Result<()> {
            let parts = map_row_ranges(rows, MIN_ROWS_PER_THREAD, |range| {
                let m = range.len();
                let xs = Matrix::from_vec(m, d, y[range.start * d..range.end * d].to_vec());
                let ctx =
                    context.map(|c| Matrix::from_vec(m, c.cols(), c.as_slice()[range.start * c.cols()..range.end * c.cols()].to_vec()));
                let ts = [t as f32];
                if trace {
                    self.field.velocity_and_trace(&xs, &ts, ctx.as_ref())
                } else {
                    (self.field.velocity(&xs, &ts, ctx.as_ref()), Vec::new())
                }
            });
            let (mut at, mut at_trace) = (0, rows * d);
            for (v, tr) in parts {
                out[at..at + v.as_slice().len()].copy_from_slice(v.as_slice());
                at += v.as_slice().len();
                out[at_trace..at_trace + tr.len()].copy_from_slice(&tr);
                at_trace += tr.len();
            }
            Ok(())
        };
        let report = ode::integrate(&mut rhs, &mut state, t0, t1, solver)?;
        let integral = state.split_off(rows * d);
        Ok((Matrix::from_vec(rows, d, state), integral, report))
    }

    /// Exact log-density of each row (nats), with what the integration cost.
    ///
    /// # Errors
    /// Bad input (wrong width, non-finite values, wrong context) or a failed integration.
    pub fn log_prob(&self, x: &Matrix, context: Option<&Matrix>, solver: Solver) -> Result<(Vec<f32>, Report)> {
        self.check(x, context)?;
        let (z, integral, report) = self.flow(x, context, 1.0, 0.0, true, solver)?;
        let half_log_2pi = 0.5 * (2.0 * std::f64::consts::PI).ln();
        let lp = (0..z.rows())
            .map(|r| {
                let base: f64 = z.row(r).iter().map(|&v| -0.5 * (v as f64).powi(2) - half_log_2pi).sum();
                (base + integral[r] as f64) as f32
            })
            .collect();
        Ok((lp, report))
    }

    /// The latent code (the base sample at `t = 0`) of each row.
    ///
    /// # Errors
    /// As [`FlowMatching::log_prob`].
    pub fn encode(&self, x: &Matrix, context: Option<&Matrix>, solver: Solver) -> Result<Matrix> {
        self.check(x, context)?;
        Ok(self.flow(x, context, 1.0, 0.0, false, solver)?.0)
    }

    /// The data rows of latent codes `z`.
    ///
    /// # Errors
    /// As [`FlowMatching::log_prob`].
    pub fn decode(&self, z: &Matrix, context: Option<&Matrix>, solver: Solver) -> Result<Matrix> {
        self.check(z, context)?;
        Ok(self.flow(z, context, 0.0, 1.0, false, solver)?.0)
    }

    /// `n` samples (with `context`, one per context row: `n` must match its rows).
    ///
    /// # Errors
    /// As [`FlowMatching::decode`].
    pub fn sample(&self, n: usize, context: Option<&Matrix>, rng: &mut Rng, solver: Solver) -> Result<Matrix> {
        Ok(self.sample_with_report(n, context, rng, solver)?.0)
    }

    /// [`FlowMatching::sample`], with what the integration cost.
    ///
    /// # Errors
    /// As [`FlowMatching::decode`].
    pub fn sample_with_report(&self, n: usize, context: Option<&Matrix>, rng: &mut Rng, solver: Solver) -> Result<(Matrix, Report)> {
        let mut z = vec![0.0f32; n * self.dim()];
        rng.fill_normal(&mut z);
        let z = Matrix::from_vec(n, self.dim(), z);
        self.check(&z, context)?;
        let (x, _, report) = self.flow(&z, context, 0.0, 1.0, false, solver)?;
        Ok((x, report))
    }
}

/// The rows of `x1` reordered so that row `i` is the data row matched to noise row `i` by the
/// assignment of least total squared distance.
fn pair_by_transport(x0: &[f32], x1: &Matrix) -> Matrix {
    let (n, d) = (x1.rows(), x1.cols());
    let mut cost = vec![0.0f64; n * n];
    for (i, row) in cost.chunks_mut(n).enumerate() {
        let a = &x0[i * d..(i + 1) * d];
        for (j, c) in row.iter_mut().enumerate() {
            *c = a.iter().zip(x1.row(j)).map(|(&p, &q)| ((p - q) as f64).powi(2)).sum();
        }
    }
    let order = assign(&cost, n);
    x1.select_rows(&order)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Rows of a correlated Gaussian with covariance [[1, ρ], [ρ, 1]], and its entropy.
    fn correlated(n: usize, rho: f64, rng: &mut Rng) -> (Matrix, f64) {
        let c = (1.0 - rho * rho).sqrt();
        let data = (0..n)
            .flat_map(|_| {
                let (a, b) = (rng.normal(), rng.normal());
                [a as f32, (rho * a + c * b) as f32]
            })
            .collect();
        let entropy = (2.0 * std::f64::consts::PI * std::f64::consts::E).ln() + 0.5 * (1.0 - rho * rho).ln();
        (Matrix::from_vec(n, 2, data), entropy)
    }

    #[test]
    fn logit_normal_times_have_their_moments_keep_the_best_field_and_refuse_a_bad_spread() {
        let sampling = TimeSampling::logit_normal(1.2, 1.0).unwrap();
        assert!(TimeSampling::logit_normal(0.0, 0.0).is_err() && TimeSampling::logit_normal(f32::INFINITY, 1.0).is_err());
        let mut rng = Rng::new(7);
        let logits: Vec<f64> = (0..20_000)
            .map(|_| {
                let t = sampling.draw(&mut rng) as f64;
                assert!(t > 0.0 && t < 1.0, "t = {t}");
                (t / (1.0 - t)).ln()
            })
            .collect();
        let mean = logits.iter().sum::<f64>() / logits.len() as f64;
        let sd = (logits.iter().map(|v| (v - mean).powi(2)).sum::<f64>() / logits.len() as f64).sqrt();
        assert!((mean - 1.2).abs() < 0.03 && (sd - 1.0).abs() < 0.03, "logit mean {mean}, sd {sd}");
        // The same density is learnt with the times drawn this way (in 8000 steps where uniform
        // times need 4000: fewer steps go to the noise end, where this density takes shape).
        let mut rng = Rng::new(1);
        let (train, entropy) = correlated(20_000, 0.8, &mut rng);
        let (test, _) = correlated(4_000, 0.8, &mut rng);
        let config = FlowMatchingConfig { steps: 8000, time_sampling: sampling, ..Default::default() };
        let mut fm = FlowMatching::new(2, 0, &config).unwrap();
        fm.fit(&train, None, &config).unwrap();
        let (lp, _) = fm.log_prob(&test, None, Solver::adaptive(1e-5)).unwrap();
        let nll = -lp.iter().map(|&v| v as f64).sum::<f64>() / lp.len() as f64;
        assert!((nll - entropy).abs() < 0.03, "test NLL {nll:.4} vs entropy {entropy:.4}");
        for std in [0.0, -1.0, f32::NAN] {
            let bad = FlowMatchingConfig { time_sampling: TimeSampling::LogitNormal { mean: 0.0, std }, ..config.clone() };
            let err = fm.fit(&train, None, &bad).unwrap_err().to_string();
            assert!(err.contains("standard deviation"), "{err}");
        }
    }

    #[test]
    fn learns_a_correlated_gaussian_to_within_003_nats_of_its_entropy() {
        let mut rng = Rng::new(1);
        let (train, entropy) = correlated(20_000, 0.8, &mut rng);
        let (test, _) = correlated(4_000, 0.8, &mut rng);
        let config = FlowMatchingConfig { steps: 4000, ..Default::default() };
        let mut fm = FlowMatching::new(2, 0, &config).unwrap();
        let losses = fm.fit(&train, None, &config).unwrap();
        assert!(losses.last().unwrap() < &losses[0]);
        let (lp, report) = fm.log_prob(&test, None, Solver::adaptive(1e-5)).unwrap();
        let nll = -lp.iter().map(|&v| v as f64).sum::<f64>() / lp.len() as f64;
        assert!((nll - entropy).abs() < 0.03, "test NLL {nll:.4} vs entropy {entropy:.4} ({report:?})");
        // Decoding the codes returns the rows.
        let z = fm.encode(&test, None, Solver::adaptive(1e-6)).unwrap();
        let back = fm.decode(&z, None, Solver::adaptive(1e-6)).unwrap();
        let worst = back.as_slice().iter().zip(test.as_slice()).map(|(a, b)| (a - b).abs()).fold(0.0f32, f32::max);
        assert!(worst < 1e-4, "round trip error {worst:e}");
        // Samples have the data's correlation.
        let s = fm.sample(4000, None, &mut Rng::new(2), Solver::Rk4 { steps: 32 }).unwrap();
        let corr = (0..4000).map(|r| (s.get(r, 0) * s.get(r, 1)) as f64).sum::<f64>() / 4000.0;
        assert!((corr - 0.8).abs() < 0.08, "sample correlation {corr}");
    }

    #[test]
    fn bad_input_is_an_error_naming_the_row_and_column() {
        let fm = FlowMatching::new(2, 0, &FlowMatchingConfig::default()).unwrap();
        let x = Matrix::from_vec(2, 2, vec![0.0, 1.0, f32::NAN, 0.0]);
        let e = fm.log_prob(&x, None, Solver::Euler { steps: 4 }).unwrap_err();
        assert!(e.to_string().contains("row 2, column 1"), "{e}");
        let e = fm.encode(&Matrix::zeros(1, 3), None, Solver::Euler { steps: 4 }).unwrap_err();
        assert!(matches!(e, Error::DimensionMismatch { .. }), "{e}");
        let e = fm.encode(&Matrix::zeros(1, 2), Some(&Matrix::zeros(1, 1)), Solver::Euler { steps: 4 }).unwrap_err();
        assert!(matches!(e, Error::ContextMismatch(_)), "{e}");
    }
}
