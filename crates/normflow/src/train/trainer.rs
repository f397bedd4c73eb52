//! One optimisation step: mean NLL of a batch, its gradient (rows split across threads, each
//! with its own gradient buffer, summed after), norm clipping, and an Adam update.

use crate::engine::threads::{run_parallel, split_rows, worker_count};
use crate::engine::{Adam, Matrix};
use crate::{Error, Flow, Result};

/// Rows below which a batch is not split across threads.
const MIN_ROWS_PER_THREAD: usize = 64;

/// Optimiser state for training one flow with Adam.
///
/// # Example
/// ```
/// use normflow::{flows::MafConfig, train::Trainer, Matrix, Rng};
/// let mut flow = MafConfig::new(2).with_standardize(false).init(&mut Rng::new(0)).unwrap();
/// let mut trainer = Trainer::new(&flow, 1e-3);
/// let batch = Matrix::from_vec(2, 2, vec![0.5, 1.0, -0.5, 0.0]);
/// let nll = trainer.step(&mut flow, &batch, None).unwrap();
/// assert!(nll.is_finite());
/// ```
#[derive(Debug)]
pub struct Trainer {
    adam: Adam,
    grads: Vec<f32>,
    thread_grads: Vec<Vec<f32>>,
    /// Gradient-norm clip (default 5; `None` turns clipping off).
    pub grad_clip: Option<f32>,
    /// Worker threads (default: one per core).
    pub threads: usize,
}

impl Trainer {
    /// A trainer for `flow` with learning rate `lr`.
    pub fn new(flow: &Flow, lr: f32) -> Self {
        let n = flow.num_params();
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        Self { adam: Adam::new(n, lr), grads: vec![0.0; n], thread_grads: Vec::new(), grad_clip: Some(5.0), threads }
    }

    /// Sets the learning rate (for schedules).
    pub fn set_lr(&mut self, lr: f32) {
        self.adam.lr = lr;
    }

    /// The gradient of the last step (mean NLL), after clipping.
    pub fn grads(&self) -> &[f32] {
        &self.grads
    }

    /// Computes the mean NLL of `x` and its gradient into [`Trainer::grads`], without updating.
    ///
    /// # Errors
    /// [`Error::NotEnoughData`] for an empty batch; errors of the layers' backward passes.
    pub fn compute_gradient(&mut self, flow: &Flow, x: &Matrix, context: Option<&Matrix>) -> Result<f64> {
        if x.rows() == 0 {
            return Err(Error::NotEnoughData("empty training batch".into()));
        }
        let parts = worker_count(x.rows(), MIN_ROWS_PER_THREAD).min(self.threads.max(1));
        self.grads.iter_mut().for_each(|g| *g = 0.0);
        let total = if parts <= 1 {
            flow.nll_and_grad(x, context, &mut self.grads)?
        } else {
            let ranges = split_rows(x.rows(), parts);
            self.thread_grads.resize_with(ranges.len(), || vec![0.0; flow.num_params()]);
            let results = run_parallel(
                ranges
                    .iter()
                    .zip(self.thread_grads.iter_mut())
                    .map(|(r, g)| {
                        let (xs, cs) = (x.slice_rows(r.start, r.end), context.map(|c| c.slice_rows(r.start, r.end)));
                        move || {
                            g.iter_mut().for_each(|v| *v = 0.0);
                            flow.nll_and_grad(&xs, cs.as_ref(), g)
                        }
                    })
                    .collect(),
            );
            let mut total = 0.0;
            for r in results {
                total += r?;
            }
            for tg in &self.thread_grads[..ranges.len()] {
                self.grads.iter_mut().zip(tg).for_each(|(a, b)| *a += b);
            }
            total
        };
        let scale = 1.0 / x.rows() as f32;
        self.grads.iter_mut().for_each(|g| *g *= scale);
        Ok(total / x.rows() as f64)
    }

    /// One step: mean NLL of the batch (before the update), gradient, clip, Adam update.
    ///
    /// # Errors
    /// [`Error::NonFiniteLoss`] (with step 0; [`crate::train::fit`] fills in the real step) if the
    /// loss or a gradient is NaN or infinite, in which case the parameters are not touched.
    pub fn step(&mut self, flow: &mut Flow, x: &Matrix, context: Option<&Matrix>) -> Result<f64> {
        let loss = self.compute_gradient(flow, x, context)?;
        let norm = self.grads.iter().map(|g| (*g as f64) * (*g as f64)).sum::<f64>().sqrt();
        if !loss.is_finite() || !norm.is_finite() {
            return Err(Error::NonFiniteLoss { step: 0 });
        }
        if let Some(clip) = self.grad_clip {
            if norm > clip as f64 {
                let s = (clip as f64 / norm) as f32;
                self.grads.iter_mut().for_each(|g| *g *= s);
            }
        }
        self.adam.begin_step();
        let (adam, grads) = (&mut self.adam, &self.grads);
        let mut off = 0;
        flow.transform_mut().params_mut(&mut |p| {
            adam.update(off, p, &grads[off..off + p.len()]);
            off += p.len();
        });
        Ok(loss)
    }
}
