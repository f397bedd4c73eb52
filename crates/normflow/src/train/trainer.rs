//! One optimisation step: mean NLL of a batch, its gradient (rows split across threads, each
//! with its own gradient buffer, summed after), norm clipping, and an Adam update.

use crate::engine::threads::{run_parallel, split_rows, worker_count};
use crate::engine::{Adam, Matrix};
use crate::{Error, Flow, Result};

/// Rows below which a batch is not split across threads.
const MIN_ROWS_PER_THREAD: usize = 64;

/// Optimiser state for training one flow with Adam.
///
/// On glibc, call [`crate::engine::keep_freed_memory`] once at program start: a step allocates
/// its matrices afresh, and the default allocator settings make that cost up to a third of a
/// step at WORKLOAD.md's size M.
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

    /// The gradient of the mean NLL from the last step, before clipping.
    pub fn grads(&self) -> &[f32] {
        &self.grads
    }

    /// Computes the mean NLL of `x` and its gradient into [`Trainer::grads`], without updating.
    /// Returns the mean NLL and the gradient's norm.
    ///
    /// # Errors
    /// [`Error::NotEnoughData`] for an empty batch; errors of the layers' backward passes.
    pub fn compute_gradient(&mut self, flow: &Flow, x: &Matrix, context: Option<&Matrix>) -> Result<(f64, f64)> {
        if x.rows() == 0 {
            return Err(Error::NotEnoughData("empty training batch".into()));
        }
        let parts = worker_count(x.rows(), MIN_ROWS_PER_THREAD).min(self.threads.max(1));
        let ranges = split_rows(x.rows(), parts);
        let n = flow.num_params();
        self.thread_grads.resize_with(ranges.len().saturating_sub(1), || vec![0.0; n]);
        // Each chunk of rows writes its gradient sum into its own buffer (the first into `grads`).
        let buffers = std::iter::once(&mut self.grads).chain(self.thread_grads.iter_mut());
        let results = run_parallel(
            ranges
                .iter()
                .zip(buffers)
                .map(|(r, g)| {
                    let rows = (r.start > 0 || r.end < x.rows())
                        .then(|| (x.slice_rows(r.start, r.end), context.map(|c| c.slice_rows(r.start, r.end))));
                    move || match &rows {
                        Some((xs, cs)) => flow.nll_and_grad(xs, cs.as_ref(), g),
                        None => flow.nll_and_grad(x, context, g),
                    }
                })
                .collect(),
        );
        let mut total = 0.0;
        for r in results {
            total += r?;
        }
        // Reduce the buffers, scale to the mean, and take the squared norm, in parallel chunks.
        let scale = 1.0 / x.rows() as f32;
        let chunk = n.div_ceil(parts.max(1)).max(1);
        let others = &self.thread_grads;
        let sums = run_parallel(
            self.grads
                .chunks_mut(chunk)
                .enumerate()
                .map(|(c, g)| {
                    move || {
                        let off = c * chunk;
                        for other in others {
                            let len = g.len();
                            g.iter_mut().zip(&other[off..off + len]).for_each(|(a, b)| *a += b);
                        }
                        g.iter_mut()
                            .map(|v| {
                                *v *= scale;
                                (*v as f64) * (*v as f64)
                            })
                            .sum::<f64>()
                    }
                })
                .collect(),
        );
        Ok((total / x.rows() as f64, sums.iter().sum::<f64>().sqrt()))
    }

    /// One step: mean NLL of the batch (before the update), gradient, clip, Adam update.
    ///
    /// # Errors
    /// [`Error::NonFiniteLoss`] (with step 0; [`crate::train::fit`] fills in the real step) if the
    /// loss or a gradient is NaN or infinite, in which case the parameters are not touched.
    pub fn step(&mut self, flow: &mut Flow, x: &Matrix, context: Option<&Matrix>) -> Result<f64> {
        let (loss, norm) = self.compute_gradient(flow, x, context)?;
        if !loss.is_finite() || !norm.is_finite() {
            return Err(Error::NonFiniteLoss { step: 0 });
        }
        let clip = match self.grad_clip {
            Some(c) if norm > c as f64 => (c as f64 / norm) as f32,
            _ => 1.0,
        };
        self.adam.begin_step();
        let (adam, grads) = (&mut self.adam, &self.grads);
        let mut off = 0;
        flow.transform_mut().params_mut(&mut |p| {
            adam.update(off, p, &grads[off..off + p.len()], clip);
            off += p.len();
        });
        Ok(loss)
    }
}
