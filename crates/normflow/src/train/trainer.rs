//! One optimisation step: mean NLL of a batch, its gradient (rows split across threads, each
//! with its own gradient buffer, summed after), norm clipping, and an Adam update.

use std::sync::atomic::{AtomicU64, Ordering};

use crate::bijection::Tape;
use crate::engine::fastmath::LANES;
use crate::engine::threads::{for_each_mut, part_range, sum_parts_into, worker_count};
use crate::engine::{Adam, Matrix};
use crate::{Error, Flow, Result};

/// Rows below which a batch is not split across threads.
const MIN_ROWS_PER_THREAD: usize = 64;

/// Optimiser state for training one flow with Adam.
///
/// A trainer keeps, for each thread, a tape and a gradient buffer across steps, and the layers'
/// matrices are recycled (see [`Matrix`]): after the first steps a step allocates nothing.
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
    parts: Vec<Part>,
    /// Squared norms of the gradient's chunks (f64 bits), one per thread.
    chunk_norms: Vec<AtomicU64>,
    /// Gradient-norm clip (default 5; `None` turns clipping off).
    pub grad_clip: Option<f32>,
    /// Worker threads (default: one per core).
    pub threads: usize,
}

/// What one thread keeps across steps: its tape, its gradient sum and its last result.
#[derive(Debug)]
struct Part {
    tape: Tape,
    grads: Vec<f32>,
    loss: Result<f64>,
}

impl Trainer {
    /// A trainer for `flow` with learning rate `lr`.
    pub fn new(flow: &Flow, lr: f32) -> Self {
        let n = flow.num_params();
        let threads = crate::engine::threads::cores();
        Self { adam: Adam::new(n, lr), grads: vec![0.0; n], parts: Vec::new(), chunk_norms: Vec::new(), grad_clip: Some(5.0), threads }
    }

    /// The optimiser (its moments go into checkpoints).
    pub fn adam(&self) -> &Adam {
        &self.adam
    }

    /// The optimiser, to restore a checkpoint's moments.
    pub fn adam_mut(&mut self) -> &mut Adam {
        &mut self.adam
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
        let rows = x.rows();
        if rows == 0 {
            return Err(Error::NotEnoughData("empty training batch".into()));
        }
        // A flow that tracks batch statistics (batch norm) needs those of the whole batch,
        // whatever the thread count: it runs its batch as one part.
        let parts = if flow.transform().tracks_statistics() { 1 } else { worker_count(rows, MIN_ROWS_PER_THREAD).min(self.threads.max(1)) };
        let n = flow.num_params();
        if self.grads.len() != n {
            self.grads = vec![0.0; n];
        }
        while self.parts.len() < parts {
            self.parts.push(Part { tape: Tape::new(), grads: vec![0.0; n], loss: Ok(0.0) });
            self.chunk_norms.push(AtomicU64::new(0));
        }
        // Each thread runs its rows through the flow and sums their gradient into its buffer.
        for_each_mut(&mut self.parts[..parts], &|p, part| {
            part.grads.resize(n, 0.0);
            part.loss = if parts == 1 {
                flow.nll_and_grad_with(x, context, &mut part.grads, &mut part.tape)
            } else {
                let r = part_range(rows, parts, p);
                let xs = x.slice_rows(r.start, r.end);
                let cs = context.map(|c| c.slice_rows(r.start, r.end));
                flow.nll_and_grad_with(&xs, cs.as_ref(), &mut part.grads, &mut part.tape)
            };
        });
        let mut total = 0.0;
        for part in &mut self.parts[..parts] {
            total += std::mem::replace(&mut part.loss, Ok(0.0))?;
        }
        // Reduce the buffers into `grads`, scale to the mean, and take the squared norm, each
        // thread over its own chunk of the parameters.
        let scale = 1.0 / rows as f32;
        let (sources, norms) = (&self.parts[..parts], &self.chunk_norms);
        sum_parts_into(&mut self.grads, sources, &|p| p.grads.as_slice(), parts, &|c, g| {
            norms[c].store(scale_and_square_sum(g, scale).to_bits(), Ordering::Relaxed)
        });
        let sq: f64 = self.chunk_norms[..parts].iter().map(|b| f64::from_bits(b.load(Ordering::Relaxed))).sum();
        Ok((total / rows as f64, sq.sqrt()))
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

/// Multiplies `g` by `scale` in place and returns the sum of the squares of the results, in
/// `f64` over [`LANES`] independent lanes (one running sum would keep the loop scalar).
fn scale_and_square_sum(g: &mut [f32], scale: f32) -> f64 {
    let mut acc = [0.0f64; LANES];
    let mut chunks = g.chunks_exact_mut(LANES);
    for chunk in &mut chunks {
        for (a, v) in acc.iter_mut().zip(chunk.iter_mut()) {
            *v *= scale;
            *a += (*v as f64) * (*v as f64);
        }
    }
    for (a, v) in acc.iter_mut().zip(chunks.into_remainder()) {
        *v *= scale;
        *a += (*v as f64) * (*v as f64);
    }
    acc.iter().sum()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn scales_and_sums_squares_with_a_remainder() {
        let mut g: Vec<f32> = (1..=11).map(|i| i as f32).collect();
        let sq = scale_and_square_sum(&mut g, 0.5);
        assert_eq!(g[10], 5.5);
        let expected: f64 = (1..=11).map(|i| (i as f64 * 0.5).powi(2)).sum();
        assert!((sq - expected).abs() < 1e-9, "{sq} vs {expected}");
    }
}
