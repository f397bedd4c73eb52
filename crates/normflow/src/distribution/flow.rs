//! A normalizing flow: a standard normal base pushed through a bijection.

use std::collections::BTreeMap;
use std::path::Path;

use serde::{Deserialize, Serialize};

use super::StandardNormal;
use crate::bijection::{check_context, check_context_shape, Direction, Tape};
use crate::engine::{map_row_ranges_into, pool, Matrix, MatrixRef, Rng};
use crate::train::TrainingSummary;
use crate::{Bijection, Error, Result};

/// What a model file records besides the architecture and weights.
#[derive(Clone, Debug, Default, PartialEq, Serialize, Deserialize)]
pub struct FlowMeta {
    /// The preset that built the flow ("realnvp", "maf", …) or "custom".
    pub name: String,
    /// Names of the data columns, when known.
    pub columns: Option<Vec<String>>,
    /// Summary of the training run.
    pub training: Option<TrainingSummary>,
    /// Application data (e.g. an anomaly threshold), by key.
    #[serde(default)]
    pub extra: BTreeMap<String, serde_json::Value>,
}

/// `x = f(z)`, `z ~ N(0, I)`: exact log-density, sampling, and data ↔ latent maps.
///
/// `log p(x) = log N(f⁻¹(x)) + log|det ∂f⁻¹/∂x|`.
///
/// # Errors
/// Every method checks widths and context and rejects NaN/inf inputs with the row and column.
#[derive(Debug)]
pub struct Flow {
    base: StandardNormal,
    transform: Box<dyn Bijection>,
    /// Recorded metadata (preset name, columns, training summary).
    pub meta: FlowMeta,
}

/// Row numbers in errors from a block that starts at row `offset` of the whole batch.
fn shift_rows(e: Error, offset: usize) -> Error {
    match e {
        Error::OutOfBounds { row, column, value, lo, hi } => Error::OutOfBounds { row: row + offset, column, value, lo, hi },
        Error::NonFiniteInput { what, row, column } => Error::NonFiniteInput { what, row: row + offset, column },
        Error::ValueTooLarge { what, row, column, value, limit } => Error::ValueTooLarge { what, row: row + offset, column, value, limit },
        other => other,
    }
}

/// A NaN, infinite or too large value in `m` as the error naming its row and column.
fn check_values(what: &str, m: MatrixRef<'_>) -> Result<()> {
    if let Some((row, column)) = m.first_non_finite() {
        return Err(Error::NonFiniteInput { what: what.into(), row: row + 1, column: column + 1 });
    }
    if let Some((row, column)) = m.first_beyond(MAX_ABS_VALUE) {
        let value = m.as_slice()[row * m.cols() + column];
        return Err(Error::ValueTooLarge { what: what.into(), row: row + 1, column: column + 1, value, limit: MAX_ABS_VALUE });
    }
    Ok(())
}

/// The largest magnitude a data, latent or context value may have: the base density squares
/// latent values and sums them over columns, and conditioners multiply and add inputs, so
/// values beyond about 1e18 overflow f32 arithmetic inside the flow. Larger values are refused
/// with their row and column ([`Error::ValueTooLarge`]).
pub const MAX_ABS_VALUE: f32 = 1e18;

/// Rows per block when a batch is evaluated (split across threads, then in blocks).
const EVAL_BLOCK: usize = 512;

/// Values (rows × dimension) a thread gets at least when a batch is evaluated: a block of
/// [`EVAL_BLOCK`] rows of a 64-dimensional table. Tabular flows split by whole blocks; wide rows
/// (an image, a segment of audio) carry more work each, so a few of them justify a thread (a
/// vocoder draws a second of speech as 8 segments of 4096 samples).
const EVAL_VALUES_PER_THREAD: usize = EVAL_BLOCK * 64;

/// The fewest rows of `dim` values worth a thread of their own.
fn min_rows_per_thread(dim: usize) -> usize {
    (EVAL_VALUES_PER_THREAD / dim.max(1)).clamp(1, EVAL_BLOCK)
}

impl Flow {
    /// The flow with base `N(0, I)` of the bijection's width.
    pub fn new(transform: Box<dyn Bijection>) -> Self {
        Self { base: StandardNormal::new(transform.dim()), transform, meta: FlowMeta { name: "custom".into(), ..Default::default() } }
    }

    /// Appends `layer` on the data side (applied last in the forward direction, first when
    /// scoring data), e.g. [`crate::bijection::Bounds`] for bounded columns. Keeps the metadata.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] if the widths differ.
    pub fn with_data_layer(self, layer: Box<dyn Bijection>) -> Result<Flow> {
        let meta = self.meta;
        let chain = crate::bijection::Chain::new(vec![self.transform, layer])?;
        let mut flow = Flow::new(Box::new(chain));
        flow.meta = meta;
        Ok(flow)
    }

    /// Integer-valued columns the model dequantises (0-based; see
    /// [`crate::bijection::Dequantize`]).
    pub fn dequantized_columns(&self) -> Vec<usize> {
        self.transform.dequantized_columns()
    }

    /// `x` with uniform `U(0, 1)` noise added to the dequantised columns (seeded), for scoring
    /// integer data: `−log p(v + u)` bounds `−log P(v)` from above.
    ///
    /// # Errors
    /// [`Error::Parse`]-like [`Error::NotInteger`] if a dequantised column holds a non-integer.
    pub fn dequantize_rows(&self, x: &Matrix, rng: &mut Rng) -> Result<Matrix> {
        let cols = self.dequantized_columns();
        let mut out = x.clone();
        for r in 0..x.rows() {
            for &c in &cols {
                let v = x.get(r, c);
                if v.fract() != 0.0 {
                    return Err(Error::NotInteger { row: r + 1, column: c + 1, value: v });
                }
                out.set(r, c, v + rng.uniform() as f32);
            }
        }
        Ok(out)
    }

    /// Samples with the dequantised columns floored back to integers.
    pub fn sample_discrete(&self, n: usize, context: Option<&Matrix>, rng: &mut Rng) -> Result<Matrix> {
        let mut x = self.sample(n, context, rng)?;
        let cols = self.dequantized_columns();
        for r in 0..x.rows() {
            for &c in &cols {
                x.set(r, c, x.get(r, c).floor());
            }
        }
        Ok(x)
    }

    /// Data dimension.
    pub fn dim(&self) -> usize {
        self.base.dim()
    }

    /// Context width (0 when unconditional).
    pub fn context_dim(&self) -> usize {
        self.transform.context_dim()
    }

    /// The base distribution.
    pub fn base(&self) -> &StandardNormal {
        &self.base
    }

    /// The bijection (forward: base → data).
    pub fn transform(&self) -> &dyn Bijection {
        self.transform.as_ref()
    }

    /// The bijection, mutable.
    pub fn transform_mut(&mut self) -> &mut dyn Bijection {
        self.transform.as_mut()
    }

    /// Number of trainable parameters.
    pub fn num_params(&self) -> usize {
        self.transform.num_params()
    }

    fn check_input(&self, what: &str, x: &Matrix, context: Option<&Matrix>) -> Result<()> {
        self.check_view(what, x.view(), context.map(Matrix::view))
    }

    fn check_view(&self, what: &str, x: MatrixRef<'_>, context: Option<MatrixRef<'_>>) -> Result<()> {
        if x.cols() != self.dim() {
            return Err(Error::DimensionMismatch { what: what.into(), expected: self.dim(), got: x.cols() });
        }
        check_values(what, x)?;
        check_context_shape(context.map(|c| (c.rows(), c.cols())), self.context_dim(), x.rows())?;
        context.map_or(Ok(()), |c| check_values("context", c))
    }

    /// Runs `f` on blocks of at most `EVAL_BLOCK` rows, spread over threads (at least
    /// [`min_rows_per_thread`] rows each), and returns the per-row values in order; when `out`
    /// is given (`x.rows() × dim` values) each block's output rows are written into it in
    /// place. Blocks keep the matrix products at the sizes where they run fastest; writing in
    /// place spares the copies and the freshly mapped pages of per-thread pieces (a tenth of a
    /// small flow's log-prob went to them).
    fn par_rows<T: Send>(
        &self,
        x: MatrixRef<'_>,
        context: Option<MatrixRef<'_>>,
        out: Option<&mut [f32]>,
        f: impl Fn(&Matrix, Option<&Matrix>) -> Result<(Matrix, Vec<T>)> + Sync,
    ) -> Result<Vec<T>> {
        let dim = self.dim();
        let f = &f;
        let parts = map_row_ranges_into(x.rows(), min_rows_per_thread(dim), dim, out, |range, mut slot| -> Result<Vec<T>> {
            let mut vals = Vec::with_capacity(range.len());
            for start in range.clone().step_by(EVAL_BLOCK) {
                let end = (start + EVAL_BLOCK).min(range.end);
                let (m, v) =
                    f(&x.slice_rows(start, end), context.map(|c| c.slice_rows(start, end)).as_ref()).map_err(|e| shift_rows(e, start))?;
                if let Some(o) = slot.as_deref_mut() {
                    o[(start - range.start) * dim..(end - range.start) * dim].copy_from_slice(m.as_slice());
                }
                vals.extend(v);
            }
            Ok(vals)
        });
        let mut vals = Vec::with_capacity(x.rows());
        for part in parts {
            vals.extend(part?);
        }
        Ok(vals)
    }

    /// The transform's map alone (no log-det) of checked rows, in parallel blocks.
    fn map_rows(&self, x: MatrixRef<'_>, context: Option<MatrixRef<'_>>, direction: Direction) -> Result<Matrix> {
        let mut out = vec![0.0; x.rows() * self.dim()];
        self.par_rows(x, context, Some(&mut out), |xs, cs| Ok((self.transform.apply(xs, cs, direction)?, Vec::<f32>::new())))?;
        Ok(Matrix::from_vec(x.rows(), self.dim(), out))
    }

    /// `log p(x)` per row.
    pub fn log_prob(&self, x: &Matrix, context: Option<&Matrix>) -> Result<Vec<f32>> {
        self.log_prob_view(x.view(), context.map(Matrix::view))
    }

    /// [`Flow::log_prob`] of rows read in place (a borrowed buffer, such as a numpy array's):
    /// no copy of the whole input is made.
    pub fn log_prob_view(&self, x: MatrixRef<'_>, context: Option<MatrixRef<'_>>) -> Result<Vec<f32>> {
        self.check_view("data", x, context)?;
        self.par_rows(x, context, None, |xs, cs| {
            let (z, ld) = self.transform.inverse_and_log_det(xs, cs)?;
            let lp = self.base.log_prob(&z).iter().zip(&ld).map(|(a, b)| a + b).collect();
            Ok((z, lp))
        })
    }

    /// Latent codes `z = f⁻¹(x)`.
    pub fn encode(&self, x: &Matrix, context: Option<&Matrix>) -> Result<Matrix> {
        self.encode_view(x.view(), context.map(Matrix::view))
    }

    /// [`Flow::encode`] of rows read in place.
    pub fn encode_view(&self, x: MatrixRef<'_>, context: Option<MatrixRef<'_>>) -> Result<Matrix> {
        self.check_view("data", x, context)?;
        self.map_rows(x, context, Direction::Inverse)
    }

    /// Data rows `x = f(z)` from latent codes.
    pub fn decode(&self, z: &Matrix, context: Option<&Matrix>) -> Result<Matrix> {
        self.decode_view(z.view(), context.map(Matrix::view))
    }

    /// [`Flow::decode`] of latent rows read in place.
    pub fn decode_view(&self, z: MatrixRef<'_>, context: Option<MatrixRef<'_>>) -> Result<Matrix> {
        self.check_view("latents", z, context)?;
        self.map_rows(z, context, Direction::Forward)
    }

    /// Sets the ODE solver of the flow's continuous layers; returns whether it has any.
    pub fn set_solver(&mut self, solver: crate::ode::Solver) -> bool {
        self.transform.set_solver(solver)
    }

    /// `per_context` samples for each row of `context`, in context-row order: rows
    /// `i·per_context .. (i+1)·per_context` of the result are drawn given context row `i`.
    ///
    /// # Errors
    /// [`Error::ContextMismatch`] for a context of the wrong width or an unconditional flow;
    /// [`Error::NonFiniteInput`] for a NaN or infinite context value.
    pub fn sample_per_context(&self, per_context: usize, context: &Matrix, rng: &mut Rng) -> Result<Matrix> {
        let repeated = context.repeat_rows(per_context);
        self.sample(repeated.rows(), Some(&repeated), rng)
    }

    /// `n` samples (one per context row when conditional: then `n` must equal its row count).
    pub fn sample(&self, n: usize, context: Option<&Matrix>, rng: &mut Rng) -> Result<Matrix> {
        self.sample_at_temperature(n, 1.0, context, rng)
    }

    /// `n` samples and their log-densities, from one pass.
    pub fn sample_and_log_prob(&self, n: usize, context: Option<&Matrix>, rng: &mut Rng) -> Result<(Matrix, Vec<f32>)> {
        check_context(context, self.context_dim(), n)?;
        let z = self.base.sample(n, rng);
        let base_lp = self.base.log_prob(&z);
        let mut x = vec![0.0; n * self.dim()];
        let ld = self.par_rows(z.view(), context.map(Matrix::view), Some(&mut x), |zs, cs| self.transform.forward_and_log_det(zs, cs))?;
        Ok((Matrix::from_vec(n, self.dim(), x), base_lp.iter().zip(&ld).map(|(a, b)| a - b).collect()))
    }

    /// `n` samples at temperature `t`: base draws scaled by `t` before the forward map (Glow's
    /// reduced-temperature sampling; `t = 1` is [`Flow::sample`]).
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for a temperature that is not positive and finite; as
    /// [`Flow::sample`] otherwise.
    pub fn sample_at_temperature(&self, n: usize, t: f32, context: Option<&Matrix>, rng: &mut Rng) -> Result<Matrix> {
        if !(t > 0.0 && t.is_finite()) {
            return Err(Error::config(format!("the temperature must be positive and finite, got {t}")));
        }
        check_context(context, self.context_dim(), n)?;
        let mut z = self.base.sample(n, rng);
        if t != 1.0 {
            z.as_mut_slice().iter_mut().for_each(|v| *v *= t);
        }
        self.map_rows(z.view(), context.map(Matrix::view), Direction::Forward)
    }

    /// Sum over rows of `−log p(x)`, writing its gradient with respect to the parameters into
    /// `grads` (length [`Flow::num_params`], overwritten). Single-threaded; the training loop splits batches.
    ///
    /// # Errors
    /// As [`Bijection::backward`]; inputs are not re-validated here (the caller has).
    pub fn nll_and_grad(&self, x: &Matrix, context: Option<&Matrix>, grads: &mut [f32]) -> Result<f64> {
        self.nll_and_grad_with(x, context, grads, &mut Tape::new())
    }

    /// [`Flow::nll_and_grad`] recording on `tape`: a caller that keeps its tape across steps
    /// reuses the tape's memory (the training loop does, and then allocates nothing).
    ///
    /// # Errors
    /// As [`Flow::nll_and_grad`].
    pub fn nll_and_grad_with(&self, x: &Matrix, context: Option<&Matrix>, grads: &mut [f32], tape: &mut Tape) -> Result<f64> {
        tape.clear();
        let (z, ld) = self.transform.train_forward(x, context, Direction::Inverse, tape)?;
        let nll: f64 = (0..z.rows()).map(|i| -(self.base.log_prob_row(z.row(i)) + ld[i] as f64)).sum();
        // d(−log N(z))/dz = z; d(−ld)/d ld = −1.
        let minus_one = pool::filled(x.rows(), -1.0);
        let done = self.transform.backward(Direction::Inverse, tape, z, &minus_one, grads);
        pool::give(minus_one);
        pool::give(ld);
        done?;
        Ok(nll)
    }

    /// Data-dependent initialisation (standardisation statistics, ActNorm) from training rows.
    ///
    /// # Errors
    /// [`Error::ConstantColumn`] and friends from the layers.
    pub fn data_init(&mut self, x: &Matrix, context: Option<&Matrix>) -> Result<()> {
        self.check_input("data", x, context)?;
        self.transform.data_init(x, context).map(|_| ())
    }

    /// Re-estimates the statistics training tracks as running averages (batch norm's) exactly
    /// from data rows `x`; a no-op for flows without such layers. [`crate::train::fit`] does
    /// this at the end of training.
    pub fn recalibrate(&mut self, x: &Matrix, context: Option<&Matrix>) -> Result<()> {
        if !self.transform.tracks_statistics() {
            return Ok(());
        }
        self.check_input("data", x, context)?;
        self.transform.recalibrate(x, context).map(|_| ())
    }

    /// Saves to a model file (atomically). See [`crate::io::save_flow`].
    pub fn save(&self, path: impl AsRef<Path>) -> Result<()> {
        crate::io::save_flow(self, path.as_ref())
    }

    /// Loads a model file. See [`crate::io::load_flow`].
    pub fn load(path: impl AsRef<Path>) -> Result<Self> {
        crate::io::load_flow(path.as_ref())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn wide_rows_are_split_over_threads_in_fewer_rows_than_tables() {
        // Tables split by whole blocks; a vocoder's 4096-sample segments 8 at a time.
        assert_eq!(min_rows_per_thread(8), EVAL_BLOCK);
        assert_eq!(min_rows_per_thread(64), EVAL_BLOCK);
        assert_eq!(min_rows_per_thread(784), 41);
        assert_eq!(min_rows_per_thread(4096), 8);
        assert_eq!(min_rows_per_thread(1 << 20), 1);
        assert_eq!(min_rows_per_thread(0), EVAL_BLOCK);
    }
}
