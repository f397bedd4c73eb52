//! 1-D dilated convolution for audio flows (stride 1, "same" zero padding, odd kernels, any
//! dilation): forward, input gradient and weight/bias gradients, one matrix product per tap
//! (`gemm`) on shifted column blocks of each signal, so nothing is unrolled into a larger
//! matrix.
//!
//! Layout: a signal is one row of `channels × length` values (channel-major: each channel's
//! samples contiguous), a batch is `batch` such rows; weights are `[out_channels, in_channels,
//! kernel]` (PyTorch's), biases `[out_channels]`. Single-threaded: callers spread the batch
//! over the worker pool.

use super::matmul::{block_product, Block, Product};

/// The shape of a 1-D convolution over a batch of signals.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv1dShape {
    /// Signals in the batch.
    pub batch: usize,
    /// Input channels.
    pub in_channels: usize,
    /// Output channels.
    pub out_channels: usize,
    /// Samples per channel.
    pub length: usize,
    /// Taps (odd; 1 for a 1×1 convolution).
    pub kernel: usize,
    /// Samples between taps.
    pub dilation: usize,
}

impl Conv1dShape {
    /// Values per input signal.
    pub fn input_len(&self) -> usize {
        self.in_channels * self.length
    }

    /// Values per output signal.
    pub fn output_len(&self) -> usize {
        self.out_channels * self.length
    }

    /// Weight values: `out_channels · in_channels · kernel`.
    pub fn weight_len(&self) -> usize {
        self.out_channels * self.in_channels * self.kernel
    }

    /// Multiply-adds of one forward pass over the batch (taps that fall wholly outside the
    /// signal count nothing).
    pub fn forward_macs(&self) -> usize {
        let columns: usize = (0..self.kernel).filter_map(|k| self.valid(k)).map(|(_, _, n)| n).sum();
        self.batch * self.out_channels * self.in_channels * columns
    }

    /// For tap `k`: the first output column it reaches, the input column that column reads,
    /// and how many columns it reaches (`None` when the tap lies wholly in the padding).
    fn valid(&self, k: usize) -> Option<(usize, usize, usize)> {
        let shift = (k as isize - (self.kernel as isize - 1) / 2) * self.dilation as isize;
        let n = self.length as isize - shift.abs();
        (n > 0).then(|| {
            let out_start = (-shift).max(0) as usize;
            (out_start, (out_start as isize + shift) as usize, n as usize)
        })
    }

    fn check(&self, input: &[f32], weight: &[f32]) {
        assert!(self.kernel % 2 == 1 && self.dilation >= 1, "odd kernels and a dilation of at least 1");
        assert_eq!(input.len(), self.batch * self.input_len(), "input length");
        assert_eq!(weight.len(), self.weight_len(), "weight length");
    }

    /// The weight of tap `k` as an `[out, in]` matrix, for every tap (from `[out, in, kernel]`).
    fn taps(&self, weight: &[f32]) -> Vec<f32> {
        let (o, i, kn) = (self.out_channels, self.in_channels, self.kernel);
        let mut taps = vec![0.0; weight.len()];
        for (j, w) in weight.iter().enumerate() {
            let (oc, rest) = (j / (i * kn), j % (i * kn));
            taps[(rest % kn) * o * i + oc * i + rest / kn] = *w;
        }
        taps
    }
}

/// `out = conv(input) + bias` (`batch · out_channels · length` values, overwritten).
///
/// # Panics
/// If a buffer's length does not match the shape, or the kernel is even.
pub fn conv1d_forward(s: Conv1dShape, input: &[f32], weight: &[f32], bias: &[f32], out: &mut [f32]) {
    s.check(input, weight);
    assert_eq!(bias.len(), s.out_channels, "bias length");
    assert_eq!(out.len(), s.batch * s.output_len(), "output length");
    let taps = s.taps(weight);
    let (len, per_tap) = (s.length, s.out_channels * s.in_channels);
    for (x, y) in input.chunks_exact(s.input_len()).zip(out.chunks_exact_mut(s.output_len())) {
        for (channel, &b) in y.chunks_exact_mut(len).zip(bias) {
            channel.fill(b);
        }
        for k in 0..s.kernel {
            let Some((to, from, n)) = s.valid(k) else { continue };
            let w = Block { data: &taps[k * per_tap..], ld: s.in_channels };
            let x = Block { data: &x[from..], ld: len };
            block_product(Product::AB, &mut y[to..], len, w, x, s.out_channels, n, s.in_channels, true);
        }
    }
}

/// The gradients of [`conv1d_forward`] given the output's gradient: `(input, weight, bias)`,
/// the input gradient empty unless `want_input`.
///
/// # Panics
/// As [`conv1d_forward`].
pub fn conv1d_backward(
    s: Conv1dShape,
    input: &[f32],
    weight: &[f32],
    grad_out: &[f32],
    want_input: bool,
) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    s.check(input, weight);
    assert_eq!(grad_out.len(), s.batch * s.output_len(), "output gradient length");
    let taps = s.taps(weight);
    let (len, per_tap, kn) = (s.length, s.out_channels * s.in_channels, s.kernel);
    let mut grad_input = if want_input { vec![0.0; input.len()] } else { Vec::new() };
    let mut tap_grads = vec![0.0; weight.len()];
    let mut grad_bias = vec![0.0; s.out_channels];
    for (b, (x, g)) in input.chunks_exact(s.input_len()).zip(grad_out.chunks_exact(s.output_len())).enumerate() {
        for (gb, channel) in grad_bias.iter_mut().zip(g.chunks_exact(len)) {
            *gb += super::fastmath::sum(channel);
        }
        for k in 0..kn {
            let Some((to, from, n)) = s.valid(k) else { continue };
            let gy = Block { data: &g[to..], ld: len };
            // grad W_k += g[:, to..] · x[:, from..]ᵀ
            let xb = Block { data: &x[from..], ld: len };
            block_product(Product::ABt, &mut tap_grads[k * per_tap..], s.in_channels, gy, xb, s.out_channels, s.in_channels, n, true);
            if want_input {
                // grad x[:, from..] += W_kᵀ · g[:, to..]
                let w = Block { data: &taps[k * per_tap..], ld: s.in_channels };
                let gx = &mut grad_input[b * s.input_len() + from..];
                block_product(Product::AtB, gx, len, w, gy, s.in_channels, n, s.out_channels, true);
            }
        }
    }
    let (o, i) = (s.out_channels, s.in_channels);
    let mut grad_weight = vec![0.0; weight.len()];
    for (j, gw) in grad_weight.iter_mut().enumerate() {
        let (oc, rest) = (j / (i * kn), j % (i * kn));
        *gw = tap_grads[(rest % kn) * o * i + oc * i + rest / kn];
    }
    (grad_input, grad_weight, grad_bias)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Rng;

    fn random(n: usize, rng: &mut Rng) -> Vec<f32> {
        (0..n).map(|_| rng.normal() as f32).collect()
    }

    /// The convolution by its definition, in f64.
    fn naive(s: Conv1dShape, x: &[f32], w: &[f32], b: &[f32]) -> Vec<f64> {
        let mut out = vec![0.0; s.batch * s.output_len()];
        let half = (s.kernel as isize - 1) / 2;
        for n in 0..s.batch {
            for o in 0..s.out_channels {
                for t in 0..s.length {
                    let mut acc = f64::from(b[o]);
                    for c in 0..s.in_channels {
                        for k in 0..s.kernel {
                            let at = t as isize + (k as isize - half) * s.dilation as isize;
                            if at >= 0 && (at as usize) < s.length {
                                let xv = x[n * s.input_len() + c * s.length + at as usize];
                                acc += f64::from(w[(o * s.in_channels + c) * s.kernel + k]) * f64::from(xv);
                            }
                        }
                    }
                    out[n * s.output_len() + o * s.length + t] = acc;
                }
            }
        }
        out
    }

    fn shapes() -> Vec<Conv1dShape> {
        vec![
            Conv1dShape { batch: 2, in_channels: 3, out_channels: 4, length: 11, kernel: 3, dilation: 1 },
            Conv1dShape { batch: 1, in_channels: 2, out_channels: 5, length: 9, kernel: 3, dilation: 4 },
            // Taps wholly in the padding (dilation 8 on 7 samples).
            Conv1dShape { batch: 2, in_channels: 4, out_channels: 2, length: 7, kernel: 5, dilation: 8 },
            Conv1dShape { batch: 3, in_channels: 5, out_channels: 3, length: 6, kernel: 1, dilation: 1 },
        ]
    }

    #[test]
    fn forward_matches_the_definition() {
        let mut rng = Rng::new(3);
        for s in shapes() {
            let (x, w, b) = (random(s.batch * s.input_len(), &mut rng), random(s.weight_len(), &mut rng), random(s.out_channels, &mut rng));
            let mut out = vec![f32::NAN; s.batch * s.output_len()];
            conv1d_forward(s, &x, &w, &b, &mut out);
            for (a, e) in out.iter().zip(naive(s, &x, &w, &b)) {
                assert!((f64::from(*a) - e).abs() < 1e-4 * (1.0 + e.abs()), "{s:?}: {a} vs {e}");
            }
        }
    }

    #[test]
    fn gradients_match_finite_differences() {
        let mut rng = Rng::new(5);
        for s in shapes() {
            let (x, w, b) = (random(s.batch * s.input_len(), &mut rng), random(s.weight_len(), &mut rng), random(s.out_channels, &mut rng));
            // Loss = Σ out · r for fixed random r: its output gradient is r.
            let r = random(s.batch * s.output_len(), &mut rng);
            let loss = |x: &[f32], w: &[f32], b: &[f32]| -> f64 { naive(s, x, w, b).iter().zip(&r).map(|(o, r)| o * f64::from(*r)).sum() };
            let (gx, gw, gb) = conv1d_backward(s, &x, &w, &r, true);
            let h = 1e-2f32;
            let fd = |f: &dyn Fn(f32) -> f64| (f(h) - f(-h)) / (2.0 * f64::from(h));
            for i in 0..x.len() {
                let d = fd(&|e| {
                    let mut x2 = x.clone();
                    x2[i] += e;
                    loss(&x2, &w, &b)
                });
                assert!((f64::from(gx[i]) - d).abs() < 1e-3 * (1.0 + d.abs()), "{s:?} input {i}: {} vs {d}", gx[i]);
            }
            for i in 0..w.len() {
                let d = fd(&|e| {
                    let mut w2 = w.clone();
                    w2[i] += e;
                    loss(&x, &w2, &b)
                });
                assert!((f64::from(gw[i]) - d).abs() < 1e-3 * (1.0 + d.abs()), "{s:?} weight {i}: {} vs {d}", gw[i]);
            }
            for i in 0..b.len() {
                let d = fd(&|e| {
                    let mut b2 = b.clone();
                    b2[i] += e;
                    loss(&x, &w, &b2)
                });
                assert!((f64::from(gb[i]) - d).abs() < 1e-3 * (1.0 + d.abs()), "{s:?} bias {i}: {} vs {d}", gb[i]);
            }
            let (none, _, _) = conv1d_backward(s, &x, &w, &r, false);
            assert!(none.is_empty());
        }
    }
}
