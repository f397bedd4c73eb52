//! Multi-layer perceptron with ReLU hidden activations, optional weight masks (for MADE), and a
//! hand-written backward pass.

use super::layer_mask::{LayerMask, Tile};
use crate::engine::kept::Kept;
use crate::engine::small_linear::{self, KeptPanel};
use crate::engine::split_product;
use crate::engine::split_product::{PackedWeight, MIN_SIDE};
use crate::engine::{bias_grad, bias_relu, block_product, linear, matmul_ab, matmul_at_b, pool, relu_gate, Block, Matrix, Product, Rng};

/// Fully connected network `sizes[0] → sizes[1] → … → sizes[n]` with ReLU between layers and a
/// linear output.
///
/// Parameters live in one flat vector: for each layer its weight `[out, in]` (row-major) then its
/// bias `[out]`. A mask, when present, fixes some weights at zero (MADE's autoregressive masks):
/// masked weights start at zero and their gradients are zeroed, so they stay zero. The products
/// of a masked layer skip the blocks of weights its mask fixes at zero (see `layer_mask`).
#[derive(Clone, Debug)]
pub struct Mlp {
    sizes: Vec<usize>,
    params: Vec<f32>,
    masks: Option<Vec<LayerMask>>,
    /// Each layer's weight in the register tiles' layout (unmasked layers the tiles take), kept
    /// between parameter changes.
    panels: Vec<KeptPanel>,
    /// Each unmasked layer's weight packed for split-bf16 products (when those run), kept
    /// between parameter changes.
    packed: Vec<Kept<PackedWeight>>,
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
    dense_tiled(x, w, b, relu, None)
}

/// [`dense`] for a masked weight: one product per tile of units, over the tile's inputs only,
/// unless the layer is narrow enough for the register tiles and they take masked layers
/// ([`small_linear::takes_masked`]: the whole weight, its masked entries being zeros, with the
/// bias and ReLU fused, as the kept panels of inference do) or wide enough for the split
/// products (about twice the work of the tiles at 2.4 times the rate).
fn dense_tiled(x: &Matrix, w: &[f32], b: &[f32], relu: bool, tiles: Option<&[Tile]>) -> Matrix {
    let (rows, fan_in, fan_out) = (x.rows(), x.cols(), b.len());
    let mut out = Matrix::from_vec(rows, fan_out, pool::scratch(rows * fan_out));
    // Unmasked layers choose their kernel in `linear`; this says whether a masked one goes whole.
    let registers = small_linear::takes_masked() && small_linear::fits(fan_in, fan_out);
    match tiles {
        _ if registers || split_product::wanted(rows, fan_out, fan_in) => {
            linear(out.as_mut_slice(), x.as_slice(), w, b, rows, fan_in, relu);
            return out;
        }
        None => {
            linear(out.as_mut_slice(), x.as_slice(), w, b, rows, fan_in, relu);
            return out;
        }
        Some(tiles) => {
            for t in tiles {
                let (u, i) = (&t.units, &t.inputs);
                let x = Block { data: &x.as_slice()[i.start..], ld: fan_in };
                let w = Block { data: &w[u.start * fan_in + i.start..], ld: fan_in };
                block_product(Product::ABt, &mut out.as_mut_slice()[u.start..], fan_out, x, w, rows, u.len(), i.len(), false);
            }
        }
    }
    bias_relu(out.as_mut_slice(), b, relu);
    out
}

/// `grad_W = gᵀ · x` (`[fan_out, fan_in]`, overwritten) for a masked weight: the tiles' blocks,
/// then zeros on every fixed entry, inside the tiles or not. The tiles by inputs: blocks a few
/// inputs wide over many units run at about 0.6 of the dense time for a MADE's hidden layer,
/// blocks a few units tall over many inputs at 0.8–1.0 (`gemm` is slow on weight-gradient
/// blocks with few rows).
fn masked_weight_grad(gw: &mut [f32], g: &Matrix, x: &Matrix, mask: &LayerMask) {
    let (rows, fan_in, fan_out) = (x.rows(), x.cols(), g.cols());
    if split_product::wanted(fan_out, fan_in, rows) {
        // The whole product on the split tiles, as in `dense_tiled`.
        matmul_at_b(gw, g.as_slice(), x.as_slice(), fan_out, fan_in, rows, false);
        mask.zero_fixed(gw);
        return;
    }
    for t in &mask.by_inputs {
        let (u, i) = (&t.units, &t.inputs);
        let (g, x) = (Block { data: &g.as_slice()[u.start..], ld: fan_out }, Block { data: &x.as_slice()[i.start..], ld: fan_in });
        block_product(Product::AtB, &mut gw[u.start * fan_in + i.start..], fan_in, g, x, u.len(), i.len(), rows, false);
    }
    mask.zero_fixed(gw);
}

/// `grad_x = g · W` (`[rows, fan_in]`, overwritten) for a masked weight: one product per tile of
/// inputs, over the units that see them only.
fn masked_input_grad(gx: &mut Matrix, g: &Matrix, w: &[f32], mask: &LayerMask) {
    let (rows, fan_in, fan_out) = (gx.rows(), gx.cols(), g.cols());
    if split_product::wanted(rows, fan_in, fan_out) {
        // The whole product on the split tiles (the fixed weights are zeros).
        matmul_ab(gx.as_mut_slice(), g.as_slice(), w, rows, fan_in, fan_out, false);
        return;
    }
    for t in &mask.by_inputs {
        let (u, i) = (&t.units, &t.inputs);
        let (g, w) = (Block { data: &g.as_slice()[u.start..], ld: fan_out }, Block { data: &w[u.start * fan_in + i.start..], ld: fan_in });
        block_product(Product::AB, &mut gx.as_mut_slice()[i.start..], fan_in, g, w, rows, i.len(), u.len(), false);
    }
}

impl Mlp {
    /// A network with PyTorch-style uniform initialisation `U(±1/√fan_in)`; the last layer is
    /// scaled by `last_scale` (0 makes the network output exactly zero, so a flow layer starts as
    /// the identity). `masks`, one `[out, in]` 0/1 matrix per layer, fix the weights where they
    /// hold 0 at zero.
    ///
    /// # Panics
    /// If `sizes` has fewer than two entries, or the masks do not match the layers or hold other
    /// values than 0 and 1.
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
        let masks = masks.map(|m| {
            assert_eq!(m.len(), layers, "one mask per layer");
            m.into_iter().zip(sizes.windows(2)).map(|(m, w)| LayerMask::new(&m, w[1], w[0])).collect()
        });
        let mut mlp = Self {
            sizes: sizes.to_vec(),
            params,
            masks,
            panels: vec![KeptPanel::default(); layers],
            packed: vec![Kept::default(); layers],
        };
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
        self.forget_kept();
        &mut self.params
    }

    /// Zeroes masked weights (after loading or editing parameters).
    pub fn apply_masks(&mut self) {
        self.forget_kept();
        if let Some(masks) = &self.masks {
            let mut off = 0;
            for (w, mask) in self.sizes.windows(2).zip(masks) {
                mask.zero_fixed(&mut self.params[off..off + w[0] * w[1]]);
                off += w[0] * w[1] + w[1];
            }
        }
    }

    /// Forgets what was derived from the weights (they are about to change).
    fn forget_kept(&mut self) {
        self.panels.iter_mut().for_each(KeptPanel::clear);
        self.packed.iter_mut().for_each(Kept::clear);
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

    /// Layer `l` on rows `x`; `reuse` takes the layer's kept panel (passes between parameter
    /// changes), otherwise a panel is made for this call from the thread's buffers (a training
    /// step, whose parameters change every step).
    fn linear(&self, l: usize, x: &Matrix, relu: bool, reuse: bool) -> Matrix {
        let (off, fan_in, fan_out) = self.layer(l);
        let (w, b) = self.params[off..].split_at(fan_in * fan_out);
        let b = &b[..fan_out];
        if reuse && (self.masks.is_none() || small_linear::takes_masked()) {
            if let Some(panel) = self.panels[l].get(w, b, fan_in) {
                let mut out = Matrix::scratch(x.rows(), fan_out);
                panel.apply(out.as_mut_slice(), x.as_slice(), x.rows(), relu);
                return out;
            }
        }
        if reuse && self.masks.is_none() {
            // Built when first asked under split products, for any block the split takes.
            let packed = self.packed[l].get_or_build(|| PackedWeight::new(w, fan_out, fan_in, x.rows().max(MIN_SIDE)));
            if let Some(p) = packed {
                let mut out = Matrix::scratch(x.rows(), fan_out);
                if p.product(out.as_mut_slice(), x.as_slice(), fan_in, x.rows()) {
                    bias_relu(out.as_mut_slice(), b, relu);
                    return out;
                }
            }
        }
        let tiles = self.masks.as_ref().map(|m| m[l].by_units.as_slice());
        dense_tiled(x, w, b, relu, tiles)
    }

    /// The network's output for a batch `[rows, sizes[0]]`.
    pub fn forward(&self, x: &Matrix) -> Matrix {
        debug_assert_eq!(x.cols(), self.sizes[0]);
        let layers = self.sizes.len() - 1;
        let mut h = self.linear(0, x, layers > 1, true);
        for l in 1..layers {
            h = self.linear(l, &h, l + 1 < layers, true);
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
            let out = self.linear(l, &h, l + 1 < layers, false);
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
            bias_grad(gb, g.as_slice());
            let mask = self.masks.as_ref().map(|m| &m[l]);
            match mask {
                Some(mask) => masked_weight_grad(gw, &g, x, mask),
                None => matmul_at_b(gw, g.as_slice(), x.as_slice(), fan_out, fan_in, rows, false),
            }
            if l == 0 && !want_input_grad {
                return None;
            }
            let w = &self.params[off..off + fan_in * fan_out];
            // Overwritten by the product.
            let mut gx = Matrix::scratch(rows, fan_in);
            match mask {
                Some(mask) => masked_input_grad(&mut gx, &g, w, mask),
                None => matmul_ab(gx.as_mut_slice(), g.as_slice(), w, rows, fan_in, fan_out, false),
            }
            if l > 0 {
                // The ReLU's gate into a second buffer (in place it is slow on AMD cores; see
                // `relu_gate`).
                let mut gated = Matrix::scratch(rows, fan_in);
                relu_gate(gated.as_mut_slice(), gx.as_slice(), x.as_slice());
                gx = gated;
            }
            g = gx;
        }
        Some(g)
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::nn::{made_masks, HiddenDegrees};

    #[test]
    fn kept_packed_weights_follow_parameter_changes_and_the_precision() {
        use crate::engine::{with_product_precision, ProductPrecision};
        let mut rng = Rng::new(4);
        let mut mlp = Mlp::new(&[8, 128, 128, 8], 1.0, None, &mut rng);
        let x = Matrix::from_vec(200, 8, (0..1600).map(|i| ((i * 37 % 101) as f32) / 50.0 - 1.0).collect());
        let split = |mlp: &Mlp| with_product_precision(ProductPrecision::Bf16x3, || mlp.forward(&x));
        let plain = |mlp: &Mlp| with_product_precision(ProductPrecision::F32, || mlp.forward(&x));
        let close = |a: &Matrix, b: &Matrix| a.as_slice().iter().zip(b.as_slice()).all(|(p, q)| (p - q).abs() <= 1e-3 * (1.0 + q.abs()));
        let before = split(&mlp);
        assert!(close(&before, &plain(&mlp)), "split forward far from f32");
        // A parameter change must not reuse the weights packed before it.
        mlp.params_mut().iter_mut().for_each(|v| *v = -*v * 0.5);
        let after = split(&mlp);
        assert!(close(&after, &plain(&mlp)), "split forward after a parameter change far from f32");
        assert!(!close(&after, &before), "the parameter change had no effect");
        // Packed under split products, then asked for f32: exactly the f32 path.
        let fresh = Mlp::new(&[8, 128, 128, 8], 1.0, None, &mut Rng::new(4));
        let _ = split(&fresh);
        let reference = Mlp::new(&[8, 128, 128, 8], 1.0, None, &mut Rng::new(4));
        assert_eq!(plain(&fresh).as_slice(), plain(&reference).as_slice());
    }

    /// Forward and backward of a masked MLP in f64 with plain loops over the masked weights:
    /// (output, parameter gradients, input gradient) for the loss `Σ out ⊙ g`.
    fn reference(mlp: &Mlp, x: &Matrix, g: &Matrix) -> (Vec<f64>, Vec<f64>, Vec<f64>) {
        let sizes = mlp.sizes();
        let layers = sizes.len() - 1;
        let rows = x.rows();
        let mut acts: Vec<Vec<f64>> = vec![x.as_slice().iter().map(|&v| v as f64).collect()];
        for l in 0..layers {
            let (w, b) = mlp.layer_params(l);
            let (fi, fo) = (sizes[l], sizes[l + 1]);
            let prev = &acts[l];
            let out: Vec<f64> = (0..rows * fo)
                .map(|k| {
                    let (r, o) = (k / fo, k % fo);
                    let v = b[o] as f64 + (0..fi).map(|i| w[o * fi + i] as f64 * prev[r * fi + i]).sum::<f64>();
                    if l + 1 < layers {
                        v.max(0.0)
                    } else {
                        v
                    }
                })
                .collect();
            acts.push(out);
        }
        let mut grads = vec![0.0; mlp.params().len()];
        let mut gy: Vec<f64> = g.as_slice().iter().map(|&v| v as f64).collect();
        for l in (0..layers).rev() {
            let (off, fi, fo) = mlp.layer(l);
            let w = &mlp.params()[off..off + fi * fo];
            let mask = mlp.masks.as_ref().unwrap()[l].dense(fi * fo);
            for r in 0..rows {
                for o in 0..fo {
                    grads[off + fi * fo + o] += gy[r * fo + o];
                    for i in 0..fi {
                        grads[off + o * fi + i] += gy[r * fo + o] * acts[l][r * fi + i] * mask[o * fi + i] as f64;
                    }
                }
            }
            let mut gx = vec![0.0; rows * fi];
            for r in 0..rows {
                for i in 0..fi {
                    let s: f64 = (0..fo).map(|o| gy[r * fo + o] * w[o * fi + i] as f64).sum();
                    gx[r * fi + i] = if l > 0 && acts[l][r * fi + i] <= 0.0 { 0.0 } else { s };
                }
            }
            gy = gx;
        }
        (acts.pop().unwrap(), grads, gy)
    }

    #[test]
    fn tiled_masked_products_match_plain_loops() {
        let mut rng = Rng::new(3);
        // Large enough that the planner splits the products at the cost per call of 16-wide vectors too.
        let (d, hidden) = (64, [512, 448]);
        for (order, layout) in [
            ((0..d).collect::<Vec<_>>(), HiddenDegrees::Sorted),
            ((0..d).rev().collect(), HiddenDegrees::Sorted),
            (rng.permutation(d), HiddenDegrees::Cyclic),
        ] {
            let masks = made_masks(&order, 0, &hidden, 2, layout);
            let mut mlp = Mlp::new(&[d, hidden[0], hidden[1], 2 * d], 1.0, Some(masks), &mut rng);
            if layout == HiddenDegrees::Sorted {
                // The point of the test: the products really are split.
                let tiled = mlp.masks.as_ref().unwrap().iter().filter(|m| m.by_units.len() > 1 && m.by_inputs.len() > 1).count();
                assert!(tiled >= 2, "the larger layers of a sorted MADE this size are tiled");
            }
            // Biases away from zero, so that the ReLUs do not all cut at the origin.
            mlp.params_mut().iter_mut().for_each(|p| *p += 0.01);
            mlp.apply_masks();
            let x = Matrix::from_vec(7, d, (0..7 * d).map(|_| rng.normal() as f32).collect());
            let g = Matrix::from_vec(7, 2 * d, (0..7 * 2 * d).map(|_| rng.normal() as f32).collect());
            let (want_out, want_grads, want_gx) = reference(&mlp, &x, &g);
            let (out, cache) = mlp.forward_cached(&x);
            let mut grads = vec![f32::NAN; mlp.params().len()];
            let gx = mlp.backward(&cache, g, &mut grads, true).unwrap();
            let close = |a: &[f32], b: &[f64], what: &str| {
                for (k, (&a, &b)) in a.iter().zip(b).enumerate() {
                    assert!((a as f64 - b).abs() <= 1e-4 * (1.0 + b.abs()), "{what} {k}: {a} vs {b} ({layout:?})");
                }
            };
            close(out.as_slice(), &want_out, "output");
            close(mlp.forward(&x).as_slice(), &want_out, "uncached output");
            close(&grads, &want_grads, "parameter gradient");
            close(gx.as_slice(), &want_gx, "input gradient");
        }
    }

    #[test]
    fn wide_masked_layers_on_split_products_match_plain_loops_and_keep_fixed_weights_fixed() {
        use crate::engine::{split_products_available, with_product_precision, ProductPrecision};
        let mut rng = Rng::new(5);
        // Rows, units and inputs wide enough for the split products: masked layers then run as
        // whole products (their fixed weights zeros) instead of one per tile.
        let (d, hidden, rows) = (64, [512, 448], 200);
        let masks = made_masks(&(0..d).collect::<Vec<_>>(), 0, &hidden, 2, HiddenDegrees::Sorted);
        let mut mlp = Mlp::new(&[d, hidden[0], hidden[1], 2 * d], 1.0, Some(masks), &mut rng);
        mlp.params_mut().iter_mut().for_each(|p| *p += 0.01);
        mlp.apply_masks();
        let x = Matrix::from_vec(rows, d, (0..rows * d).map(|_| rng.normal() as f32).collect());
        let g = Matrix::from_vec(rows, 2 * d, (0..rows * 2 * d).map(|_| rng.normal() as f32).collect());
        let (want_out, want_grads, want_gx) = reference(&mlp, &x, &g);
        let mut outputs = Vec::new();
        for (precision, tolerance) in [(ProductPrecision::F32, 1e-4), (ProductPrecision::Bf16x3, 1e-3)] {
            let (out, grads, gx) = with_product_precision(precision, || {
                let (out, cache) = mlp.forward_cached(&x);
                let mut grads = vec![f32::NAN; mlp.params().len()];
                let gx = mlp.backward(&cache, g.clone(), &mut grads, true).unwrap();
                (out, grads, gx)
            });
            let close = |a: &[f32], b: &[f64], what: &str| {
                for (k, (&a, &b)) in a.iter().zip(b).enumerate() {
                    assert!((a as f64 - b).abs() <= tolerance * (1.0 + b.abs()), "{what} {k}: {a} vs {b} ({precision:?})");
                }
            };
            close(out.as_slice(), &want_out, "output");
            close(&grads, &want_grads, "parameter gradient");
            close(gx.as_slice(), &want_gx, "input gradient");
            // The fixed weights (zeros after `apply_masks`; every free one is 0.01 off zero
            // almost surely) get exactly zero gradients, so they stay fixed.
            for (k, (&p, &gr)) in mlp.params().iter().zip(&grads).enumerate() {
                assert!(p != 0.0 || gr == 0.0, "fixed weight {k} has gradient {gr} ({precision:?})");
            }
            outputs.push(out);
        }
        if split_products_available() {
            assert_ne!(outputs[0], outputs[1], "with AMX the wide masked layers ran on the split products");
        }
    }

    #[test]
    fn the_tiled_layers_follow_parameter_changes() {
        // Unmasked layers narrow enough for the register tiles keep their weights in panels
        // built on the first pass; a change of the parameters must be seen by the next pass.
        let mut mlp = Mlp::new(&[5, 24, 7], 1.0, None, &mut Rng::new(1));
        let x = Matrix::from_vec(9, 5, (0..45).map(|i| (i % 7) as f32 * 0.3 - 0.9).collect());
        let naive = |mlp: &Mlp| {
            let (mut h, sizes) = (x.as_slice().to_vec(), mlp.sizes().to_vec());
            for l in 0..2 {
                let (w, b) = mlp.layer_params(l);
                let (fi, fo) = (sizes[l], sizes[l + 1]);
                h = (0..9 * fo)
                    .map(|k| {
                        let v = b[k % fo] + (0..fi).map(|i| w[(k % fo) * fi + i] * h[(k / fo) * fi + i]).sum::<f32>();
                        if l == 0 {
                            v.max(0.0)
                        } else {
                            v
                        }
                    })
                    .collect();
            }
            h
        };
        for round in 0..3 {
            let out = mlp.forward(&x);
            for (a, b) in out.as_slice().iter().zip(naive(&mlp)) {
                assert!((a - b).abs() < 1e-4 * (1.0 + b.abs()), "round {round}: {a} vs {b}");
            }
            mlp.params_mut().iter_mut().for_each(|p| *p = -*p * 1.5 + 0.01);
        }
    }
}
