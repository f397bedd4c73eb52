//! Adam (Kingma & Ba 2015, arXiv:1412.6980) over parameters visited in a fixed order.

use super::isa::{self, Kernel};
use super::threads::{for_each_chunks_mut, part_range, worker_count};

/// Adam optimiser state for a flat parameter vector.
#[derive(Clone, Debug)]
pub struct Adam {
    /// Learning rate.
    pub lr: f32,
    beta1: f32,
    beta2: f32,
    eps: f32,
    m: Vec<f32>,
    v: Vec<f32>,
    t: i32,
}

impl Adam {
    /// Adam with the usual constants (β₁ 0.9, β₂ 0.999, ε 1e-8) for `n` parameters.
    pub fn new(n: usize, lr: f32) -> Self {
        Self { lr, beta1: 0.9, beta2: 0.999, eps: 1e-8, m: vec![0.0; n], v: vec![0.0; n], t: 0 }
    }

    /// The first and second moment estimates and the step count, for a checkpoint.
    pub fn state(&self) -> (&[f32], &[f32], i32) {
        (&self.m, &self.v, self.t)
    }

    /// Restores moments and step count saved by [`Adam::state`].
    ///
    /// # Panics
    /// If the moments do not have one value per parameter (callers check checkpoint sizes).
    pub fn restore(&mut self, m: &[f32], v: &[f32], t: i32) {
        assert!(m.len() == self.m.len() && v.len() == self.v.len(), "moments of another parameter count");
        self.m.copy_from_slice(m);
        self.v.copy_from_slice(v);
        self.t = t;
    }

    /// Starts a step: advances the step counter. Follow with [`Adam::update`] on consecutive
    /// chunks of the parameters, starting at offset 0.
    pub fn begin_step(&mut self) {
        self.t += 1;
    }

    /// Updates the parameters `params`, which sit at `offset` in the flat vector, from their
    /// gradients multiplied by `grad_scale` (for norm clipping without another pass). Long
    /// slices are split over the cores.
    pub fn update(&mut self, offset: usize, params: &mut [f32], grads: &[f32], grad_scale: f32) {
        let (b1, b2) = (self.beta1, self.beta2);
        let c1 = 1.0 - b1.powi(self.t);
        let c2 = 1.0 - b2.powi(self.t);
        let rule = Rule { b1, b2, step: self.lr * c2.sqrt() / c1, eps: self.eps * c2.sqrt(), grad_scale };
        let len = params.len();
        let m = &mut self.m[offset..offset + len];
        let v = &mut self.v[offset..offset + len];
        let parts = worker_count(len, MIN_PARAMS_PER_THREAD);
        for_each_chunks_mut([params, m, v], parts, &|p, [params, m, v]| rule.apply(params, &grads[part_range(len, parts, p)], m, v));
    }
}

/// Parameters per thread below which an update runs on fewer threads: waking a thread costs
/// about as much as updating this many.
const MIN_PARAMS_PER_THREAD: usize = 16 * 1024;

/// One step's update rule, with the bias corrections folded into the step and epsilon.
struct Rule {
    b1: f32,
    b2: f32,
    step: f32,
    eps: f32,
    grad_scale: f32,
}

impl Rule {
    /// Applies the rule to one chunk, with the widest vectors the CPU has (the same numbers on
    /// every path: no operation here is fused or reordered).
    fn apply(&self, params: &mut [f32], grads: &[f32], m: &mut [f32], v: &mut [f32]) {
        isa::dispatch(Chunk { rule: self, params, grads, m, v });
    }
}

/// One chunk's update as a kernel for [`isa::dispatch`].
struct Chunk<'a> {
    rule: &'a Rule,
    params: &'a mut [f32],
    grads: &'a [f32],
    m: &'a mut [f32],
    v: &'a mut [f32],
}

impl Kernel for Chunk<'_> {
    type Output = ();

    #[inline(always)]
    fn run<const FMA: bool>(self) {
        let Chunk { rule, params, grads, m, v } = self;
        let Rule { b1, b2, step, eps, grad_scale } = *rule;
        for (((p, &g), m), v) in params.iter_mut().zip(grads).zip(m).zip(v) {
            let g = g * grad_scale;
            *m = b1 * *m + (1.0 - b1) * g;
            *v = b2 * *v + (1.0 - b2) * g * g;
            *p -= step * *m / (v.sqrt() + eps);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn adam_minimises_a_quadratic() {
        let mut p = vec![3.0f32, -2.0];
        let mut opt = Adam::new(2, 0.05);
        for _ in 0..2000 {
            let g: Vec<f32> = p.iter().map(|x| 2.0 * (x - 1.0)).collect();
            opt.begin_step();
            opt.update(0, &mut p, &g, 1.0);
        }
        assert!(p.iter().all(|x| (x - 1.0).abs() < 1e-3), "{p:?}");
    }

    #[test]
    fn a_long_slice_split_over_threads_updates_like_short_slices_in_turn() {
        let n = 100_003;
        let start: Vec<f32> = (0..n).map(|i| (i % 17) as f32 * 0.1 - 0.8).collect();
        let grads: Vec<f32> = (0..n).map(|i| (i % 13) as f32 * 0.05 - 0.3).collect();
        let (mut whole, mut pieces) = (start.clone(), start);
        let (mut a, mut b) = (Adam::new(n, 0.01), Adam::new(n, 0.01));
        for _ in 0..3 {
            a.begin_step();
            a.update(0, &mut whole, &grads, 0.5);
            b.begin_step();
            for off in (0..n).step_by(1000) {
                let end = (off + 1000).min(n);
                b.update(off, &mut pieces[off..end], &grads[off..end], 0.5);
            }
        }
        assert_eq!(whole, pieces);
        assert_ne!(whole[1], -0.7, "the parameters moved");
    }
}
