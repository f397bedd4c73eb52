//! Multi-layer perceptron with ReLU hidden activations, optional weight masks (for MADE), and a
//! hand-written backward pass.

use crate::engine::{matmul_a_bt, matmul_ab, matmul_at_b, pool, Matrix, Rng};

/// Fully connected network `sizes[0] → sizes[1] → … → sizes[n]` with ReLU between layers and a
/// linear output.
///
/// Parameters live in one flat vector: for each layer its weight `[out, in]` (row-major) then its
/// bias `[out]`. A mask, when present, fixes some weights at zero (MADE's autoregressive masks):
/// masked weights start at zero and their gradients are zeroed, so they stay zero.
#[derive(Clone, Debug)]
pub struct Mlp {
    sizes: Vec<usize>,
    params: Vec<f32>,
    masks: Option<Vec<Vec<f32>>>,
}

/// What [`Mlp::forward_cached`] keeps for the backward pass: the input of every layer.
#[derive(Debug)]
pub struct MlpCache {
    inputs: Vec<Matrix>,
}

impl Drop for MlpCache {
    fn drop(&mut self) {
        pool::give_matrix_list(std::mem::take(&mut self.inputs));
    }
}

/// `x · Wᵀ + b` into a recycled buffer, then ReLU when `relu`: the product overwrites the buffer
/// and one pass adds the bias and clips, instead of filling the buffer with bias rows first.
pub(crate) fn dense(x: &Matrix, w: &[f32], b: &[f32], relu: bool) -> Matrix {
    let (rows, fan_in, fan_out) = (x.rows(), x.cols(), b.len());
    let mut out = Matrix::from_vec(rows, fan_out, pool::scratch(rows * fan_out));
    matmul_a_bt(out.as_mut_slice(), x.as_slice(), w, rows, fan_out, fan_in, false);
    for row in out.as_mut_slice().chunks_exact_mut(fan_out.max(1)) {
        if relu {
            row.iter_mut().zip(b).for_each(|(v, b)| *v = (*v + b).max(0.0));
        } else {
            row.iter_mut().zip(b).for_each(|(v, b)| *v += b);
        }
    }
    out
}

impl Mlp {
    /// A network with PyTorch-style uniform initialisation `U(±1/√fan_in)`; the last layer is
    /// scaled by `last_scale` (0 makes the network output exactly zero, so a flow layer starts as
    /// the identity).
    pub fn new(sizes: &[usize], last_scale: f32, masks: Option<Vec<Vec<f32>>>, rng: &mut Rng) -> Self {
        assert!(sizes.len() >= 2, "an MLP needs at least an input and an output size");
        let n: usize = sizes.windows(2).map(|w| w[0] * w[1] + w[1]).sum();
        let mut params = Vec::with_capacity(n);
        let layers = sizes.len() - 1;
        for (l, w) in sizes.windows(2).enumerate() {
            let bound = 1.0 / (w[0].max(1) as f64).sqrt();
            let scale = if l + 1 == layers { last_scale } else { 1.0 };
            for _ in 0..w[0] * w[1] + w[1] {
                params.push(((rng.uniform() * 2.0 - 1.0) * bound) as f32 * scale);
            }
        }
        let mut mlp = Self { sizes: sizes.to_vec(), params, masks };
        mlp.apply_masks();
        mlp
    }

    /// Layer sizes, input first.
    pub fn sizes(&self) -> &[usize] {
        &self.sizes
    }

    /// The flat parameter vector.
    pub fn params(&self) -> &[f32] {
        &self.params
    }

    /// The flat parameter vector, mutable. Call [`Mlp::apply_masks`] after writing to it.
    pub fn params_mut(&mut self) -> &mut [f32] {
        &mut self.params
    }

    /// Zeroes masked weights (after loading or editing parameters).
    pub fn apply_masks(&mut self) {
        if let Some(masks) = &self.masks {
            let mut off = 0;
            for (w, mask) in self.sizes.windows(2).zip(masks) {
                for (p, m) in self.params[off..off + w[0] * w[1]].iter_mut().zip(mask) {
                    *p *= m;
                }
                off += w[0] * w[1] + w[1];
            }
        }
    }

    /// Weight `[out, in]` and bias `[out]` of layer `l`.
    pub fn layer_params(&self, l: usize) -> (&[f32], &[f32]) {
        let (off, fan_in, fan_out) = self.layer(l);
        self.params[off..off + fan_in * fan_out + fan_out].split_at(fan_in * fan_out)
    }

    fn layer(&self, l: usize) -> (usize, usize, usize) {
        let off: usize = self.sizes.windows(2).take(l).map(|w| w[0] * w[1] + w[1]).sum();
        (off, self.sizes[l], self.sizes[l + 1])
    }

    fn linear(&self, l: usize, x: &Matrix, relu: bool) -> Matrix {
        let (off, fan_in, fan_out) = self.layer(l);
        let (w, b) = self.params[off..].split_at(fan_in * fan_out);
        dense(x, w, &b[..fan_out], relu)
    }

    /// The network's output for a batch `[rows, sizes[0]]`.
    pub fn forward(&self, x: &Matrix) -> Matrix {
        debug_assert_eq!(x.cols(), self.sizes[0]);
        let layers = self.sizes.len() - 1;
        let mut h = self.linear(0, x, layers > 1);
        for l in 1..layers {
            h = self.linear(l, &h, l + 1 < layers);
        }
        h
    }

    /// The output, plus the cache its backward pass needs.
    pub fn forward_cached(&self, x: &Matrix) -> (Matrix, MlpCache) {
        debug_assert_eq!(x.cols(), self.sizes[0]);
        let layers = self.sizes.len() - 1;
        let mut inputs = pool::matrix_list();
        let mut h = x.clone();
        for l in 0..layers {
            let out = self.linear(l, &h, l + 1 < layers);
            inputs.push(h);
            h = out;
        }
        (h, MlpCache { inputs })
    }

    /// Backward pass: writes the parameter gradients into `grads` (same layout as the
    /// parameters, overwritten) and
    /// returns the gradient with respect to the input when `want_input_grad`.
    pub fn backward(&self, cache: &MlpCache, grad_out: Matrix, grads: &mut [f32], want_input_grad: bool) -> Option<Matrix> {
        let layers = self.sizes.len() - 1;
        let mut g = grad_out;
        for l in (0..layers).rev() {
            let (off, fan_in, fan_out) = self.layer(l);
            let x = &cache.inputs[l];
            let rows = x.rows();
            let (gw, gb) = grads[off..off + fan_in * fan_out + fan_out].split_at_mut(fan_in * fan_out);
            gb.fill(0.0);
            for r in 0..rows {
                for (b, v) in gb.iter_mut().zip(g.row(r)) {
                    *b += v;
                }
            }
            matmul_at_b(gw, g.as_slice(), x.as_slice(), fan_out, fan_in, rows, false);
            if let Some(masks) = &self.masks {
                for (p, m) in gw.iter_mut().zip(&masks[l]) {
                    *p *= m;
                }
            }
            if l == 0 && !want_input_grad {
                return None;
            }
            let w = &self.params[off..off + fan_in * fan_out];
            // Overwritten by the product.
            let mut gx = Matrix::scratch(rows, fan_in);
            matmul_ab(gx.as_mut_slice(), g.as_slice(), w, rows, fan_in, fan_out, false);
            if l > 0 {
                // ReLU mask into a second buffer: in place, the compiler turns it into masked
                // stores of the zeros, which are microcoded and slow on AMD cores (8% of a small
                // coupling flow's training step).
                let mut masked = Matrix::scratch(rows, fan_in);
                for ((m, gv), xv) in masked.as_mut_slice().iter_mut().zip(gx.as_slice()).zip(x.as_slice()) {
                    *m = if *xv > 0.0 { *gv } else { 0.0 };
                }
                gx = masked;
            }
            g = gx;
        }
        Some(g)
    }
}
