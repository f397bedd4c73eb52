//! Residual MLP conditioner (as in neural spline flows, Durkan et al. 2019): an input layer to
//! width `H`, `n` residual blocks `h ← h + W₂·relu(W₁·relu(h) + b₁) + b₂`, then `relu` and an
//! output layer. Deep conditioners train better with the skip connections.

use crate::engine::{bias_grad, matmul_ab, matmul_at_b, pool, Matrix, Rng};

/// Residual MLP `in → H → (blocks) → out` with hand-written backward.
///
/// Parameters, flat: input layer `[H, in]` + `[H]`, per block `W₁ [H, H]`, `b₁`, `W₂ [H, H]`,
/// `b₂`, output layer `[out, H]` + `[out]`. The output layer and each block's `W₂` are scaled
/// by `last_scale` (0: the network outputs exactly 0 and every block starts as the identity).
#[derive(Clone, Debug)]
pub struct ResidualMlp {
    input: usize,
    width: usize,
    blocks: usize,
    output: usize,
    params: Vec<f32>,
}

/// What [`ResidualMlp::forward_cached`] keeps for the backward pass.
#[derive(Debug)]
pub struct ResidualCache {
    x: Matrix,
    /// Block inputs `h_0 … h_n` (`h_n` feeds the output layer).
    hs: Vec<Matrix>,
    /// Per block, in turn: `relu(h)` and the pre-activation `u = W₁ relu(h) + b₁`.
    inner: Vec<Matrix>,
}

impl Drop for ResidualCache {
    fn drop(&mut self) {
        pool::give_matrix_list(std::mem::take(&mut self.hs));
        pool::give_matrix_list(std::mem::take(&mut self.inner));
    }
}

fn relu(m: &Matrix) -> Matrix {
    let mut r = m.clone();
    r.as_mut_slice().iter_mut().for_each(|v| *v = v.max(0.0));
    r
}

/// `x · Wᵀ + b` for a layer stored `[out, in]` then `[out]` at `p`.
fn linear(p: &[f32], fan_in: usize, fan_out: usize, x: &Matrix) -> Matrix {
    let (w, b) = p[..fan_in * fan_out + fan_out].split_at(fan_in * fan_out);
    super::mlp::dense(x, w, b, false)
}

/// Writes the layer's gradients into `g` and returns the input gradient.
fn linear_backward(p: &[f32], fan_in: usize, fan_out: usize, x: &Matrix, gy: &Matrix, g: &mut [f32]) -> Matrix {
    let (gw, gb) = g[..fan_in * fan_out + fan_out].split_at_mut(fan_in * fan_out);
    bias_grad(gb, gy.as_slice());
    matmul_at_b(gw, gy.as_slice(), x.as_slice(), fan_out, fan_in, gy.rows(), false);
    let mut gx = Matrix::zeros(gy.rows(), fan_in);
    matmul_ab(gx.as_mut_slice(), gy.as_slice(), &p[..fan_in * fan_out], gy.rows(), fan_in, fan_out, false);
    gx
}

fn mask_relu(g: &mut Matrix, pre: &Matrix) {
    g.as_mut_slice().iter_mut().zip(pre.as_slice()).for_each(|(g, p)| *g = if *p > 0.0 { *g } else { 0.0 });
}

impl ResidualMlp {
    /// A residual MLP with PyTorch-style uniform initialisation.
    pub fn new(input: usize, width: usize, blocks: usize, output: usize, last_scale: f32, rng: &mut Rng) -> Self {
        let mut params = Vec::new();
        let mut layer = |fan_in: usize, fan_out: usize, scale: f32, params: &mut Vec<f32>| {
            let bound = 1.0 / (fan_in.max(1) as f64).sqrt();
            params.extend((0..fan_in * fan_out + fan_out).map(|_| ((rng.uniform() * 2.0 - 1.0) * bound) as f32 * scale));
        };
        layer(input, width, 1.0, &mut params);
        for _ in 0..blocks {
            layer(width, width, 1.0, &mut params);
            layer(width, width, last_scale, &mut params);
        }
        layer(width, output, last_scale, &mut params);
        Self { input, width, blocks, output, params }
    }

    /// The flat parameter vector.
    pub fn params(&self) -> &[f32] {
        &self.params
    }

    /// The flat parameter vector, mutable.
    pub fn params_mut(&mut self) -> &mut [f32] {
        &mut self.params
    }

    fn offsets(&self) -> (usize, usize, usize) {
        let (i, h) = (self.input, self.width);
        let first = i * h + h;
        let block = 2 * (h * h + h);
        (first, block, first + self.blocks * block)
    }

    /// Output and cache.
    pub fn forward_cached(&self, x: &Matrix) -> (Matrix, ResidualCache) {
        let (first, block, last) = self.offsets();
        let h_w = self.width;
        let mut h = linear(&self.params, self.input, h_w, x);
        let (mut hs, mut inner) = (pool::matrix_list(), pool::matrix_list());
        for b in 0..self.blocks {
            let p = &self.params[first + b * block..];
            let a1 = relu(&h);
            let u = linear(p, h_w, h_w, &a1);
            let mut out = linear(&p[h_w * h_w + h_w..], h_w, h_w, &relu(&u));
            out.as_mut_slice().iter_mut().zip(h.as_slice()).for_each(|(o, v)| *o += v);
            hs.push(h);
            inner.push(a1);
            inner.push(u);
            h = out;
        }
        let y = linear(&self.params[last..], h_w, self.output, &relu(&h));
        hs.push(h);
        (y, ResidualCache { x: x.clone(), hs, inner })
    }

    /// Output only.
    pub fn forward(&self, x: &Matrix) -> Matrix {
        self.forward_cached(x).0
    }

    /// Writes the parameter gradients into `grads` and returns the input gradient.
    pub fn backward(&self, cache: &ResidualCache, grad_out: Matrix, grads: &mut [f32]) -> Matrix {
        let (first, block, last) = self.offsets();
        let h_w = self.width;
        let h_n = &cache.hs[self.blocks];
        let mut g = linear_backward(&self.params[last..], h_w, self.output, &relu(h_n), &grad_out, &mut grads[last..]);
        mask_relu(&mut g, h_n);
        for b in (0..self.blocks).rev() {
            let (p, gp) = (&self.params[first + b * block..], &mut grads[first + b * block..first + (b + 1) * block]);
            let (a1, u) = (&cache.inner[2 * b], &cache.inner[2 * b + 1]);
            let (gp1, gp2) = gp.split_at_mut(h_w * h_w + h_w);
            let mut g_a2 = linear_backward(&p[h_w * h_w + h_w..], h_w, h_w, &relu(u), &g, gp2);
            mask_relu(&mut g_a2, u);
            let mut g_a1 = linear_backward(p, h_w, h_w, a1, &g_a2, gp1);
            mask_relu(&mut g_a1, &cache.hs[b]);
            g.as_mut_slice().iter_mut().zip(g_a1.as_slice()).for_each(|(a, b)| *a += b);
        }
        linear_backward(&self.params, self.input, h_w, &cache.x, &g, &mut grads[..first])
    }
}
