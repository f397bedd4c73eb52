//! Adam (Kingma & Ba 2015, arXiv:1412.6980) over parameters visited in a fixed order.

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

    /// Starts a step: advances the step counter. Follow with [`Adam::update`] on consecutive
    /// chunks of the parameters, starting at offset 0.
    pub fn begin_step(&mut self) {
        self.t += 1;
    }

    /// Updates the parameters `params`, which sit at `offset` in the flat vector, from their
    /// gradients multiplied by `grad_scale` (for norm clipping without another pass).
    pub fn update(&mut self, offset: usize, params: &mut [f32], grads: &[f32], grad_scale: f32) {
        let (b1, b2) = (self.beta1, self.beta2);
        let c1 = 1.0 - b1.powi(self.t);
        let c2 = 1.0 - b2.powi(self.t);
        let step = self.lr * c2.sqrt() / c1;
        let eps = self.eps * c2.sqrt();
        let m = &mut self.m[offset..offset + params.len()];
        let v = &mut self.v[offset..offset + params.len()];
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
}
