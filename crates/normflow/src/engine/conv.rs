//! 2-D convolution for image flows (stride 1, "same" zero padding, odd square kernels, 1×1
//! included): forward, input gradient and weight/bias gradients, as matrix products over an
//! im2col buffer (`gemm`), with the images of a batch spread over the worker threads.
//!
//! Layout: an image is one row of `channels × height × width` values (C×H×W, row-major), a
//! batch is `batch` such rows; weights are `[out_channels, in_channels, k, k]`, biases
//! `[out_channels]`.

use serde::{Deserialize, Serialize};

use super::matmul::{matmul_a_bt, matmul_ab, matmul_at_b};
use super::threads::map_row_ranges;

/// The shape of the images a row holds: `channels × height × width` values, row-major.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Serialize, Deserialize)]
pub struct ImageShape {
    /// Channels.
    pub channels: usize,
    /// Height in pixels.
    pub height: usize,
    /// Width in pixels.
    pub width: usize,
}

impl ImageShape {
    /// Values per image.
    pub fn len(&self) -> usize {
        self.channels * self.height * self.width
    }

    /// Whether the shape holds no values.
    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    /// Pixels per channel.
    pub fn pixels(&self) -> usize {
        self.height * self.width
    }

    /// The shape after a squeeze: four times the channels at half the height and width.
    pub fn squeezed(&self) -> ImageShape {
        ImageShape { channels: 4 * self.channels, height: self.height / 2, width: self.width / 2 }
    }
}

/// The shape of a convolution over a batch of images.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Conv2dShape {
    /// Images in the batch.
    pub batch: usize,
    /// Input channels.
    pub in_channels: usize,
    /// Output channels.
    pub out_channels: usize,
    /// Image height.
    pub height: usize,
    /// Image width.
    pub width: usize,
    /// Kernel side (odd; 1 for a 1×1 convolution).
    pub kernel: usize,
}

impl Conv2dShape {
    fn pixels(&self) -> usize {
        self.height * self.width
    }

    /// Values per input image.
    pub fn input_len(&self) -> usize {
        self.in_channels * self.pixels()
    }

    /// Values per output image.
    pub fn output_len(&self) -> usize {
        self.out_channels * self.pixels()
    }

    /// Weight values: `out_channels · in_channels · kernel²`.
    pub fn weight_len(&self) -> usize {
        self.out_channels * self.patch_len()
    }

    /// Rows of the im2col matrix: one per (input channel, kernel offset).
    fn patch_len(&self) -> usize {
        self.in_channels * self.kernel * self.kernel
    }

    /// Multiply-adds of the forward pass over the whole batch.
    pub fn forward_macs(&self) -> usize {
        self.batch * self.weight_len() * self.pixels()
    }

    fn check(&self, input: usize, weight: usize, bias: usize, output: usize) {
        assert!(self.kernel % 2 == 1, "convolution kernels are odd");
        assert_eq!(input, self.batch * self.input_len(), "input length");
        assert_eq!(weight, self.weight_len(), "weight length");
        assert_eq!(bias, self.out_channels, "bias length");
        assert_eq!(output, self.batch * self.output_len(), "output length");
    }
}

/// Images per worker at the least (smaller batches stay on one thread).
const MIN_IMAGES_PER_THREAD: usize = 2;

/// im2col of one image: row `(c, dy, dx)` of `col` holds input channel `c` shifted by the
/// kernel offset `(dy, dx)` around each pixel, zero outside the image.
fn im2col(s: &Conv2dShape, image: &[f32], col: &mut [f32]) {
    let (h, w, k, r) = (s.height, s.width, s.kernel, s.kernel / 2);
    for c in 0..s.in_channels {
        let plane = &image[c * h * w..(c + 1) * h * w];
        for dy in 0..k {
            for dx in 0..k {
                let row = &mut col[((c * k + dy) * k + dx) * h * w..][..h * w];
                for y in 0..h {
                    let sy = y as isize + dy as isize - r as isize;
                    let out = &mut row[y * w..(y + 1) * w];
                    if sy < 0 || sy >= h as isize {
                        out.fill(0.0);
                        continue;
                    }
                    let src = &plane[sy as usize * w..(sy as usize + 1) * w];
                    for (x, o) in out.iter_mut().enumerate() {
                        let sx = x as isize + dx as isize - r as isize;
                        *o = if sx < 0 || sx >= w as isize { 0.0 } else { src[sx as usize] };
                    }
                }
            }
        }
    }
}

/// The adjoint of [`im2col`]: adds each row of `col` back onto the input pixels it was read from.
fn col2im_add(s: &Conv2dShape, col: &[f32], image: &mut [f32]) {
    let (h, w, k, r) = (s.height, s.width, s.kernel, s.kernel / 2);
    for c in 0..s.in_channels {
        let plane = &mut image[c * h * w..(c + 1) * h * w];
        for dy in 0..k {
            for dx in 0..k {
                let row = &col[((c * k + dy) * k + dx) * h * w..][..h * w];
                for y in 0..h {
                    let sy = y as isize + dy as isize - r as isize;
                    if sy < 0 || sy >= h as isize {
                        continue;
                    }
                    let dst = &mut plane[sy as usize * w..(sy as usize + 1) * w];
                    for (x, &v) in row[y * w..(y + 1) * w].iter().enumerate() {
                        let sx = x as isize + dx as isize - r as isize;
                        if sx >= 0 && sx < w as isize {
                            dst[sx as usize] += v;
                        }
                    }
                }
            }
        }
    }
}

/// Runs `f(first_image, images)` over contiguous blocks of the batch in parallel, in order.
fn over_images<T: Send>(s: &Conv2dShape, f: impl Fn(std::ops::Range<usize>) -> T + Sync) -> Vec<T> {
    map_row_ranges(s.batch, MIN_IMAGES_PER_THREAD, f)
}

/// `out = conv(input, weight) + bias` for every image of the batch.
///
/// # Panics
/// If a slice's length does not match `shape` or the kernel is even (callers check shapes once,
/// where an image layer meets its input).
pub fn conv2d_forward(s: Conv2dShape, input: &[f32], weight: &[f32], bias: &[f32], out: &mut [f32]) {
    s.check(input.len(), weight.len(), bias.len(), out.len());
    let (pixels, patch) = (s.pixels(), s.patch_len());
    let blocks = over_images(&s, |range| {
        let mut col = vec![0.0f32; patch * pixels];
        let mut block = vec![0.0f32; range.len() * s.output_len()];
        for (i, n) in range.enumerate() {
            let o = &mut block[i * s.output_len()..(i + 1) * s.output_len()];
            for (c, plane) in o.chunks_mut(pixels).enumerate() {
                plane.fill(bias[c]);
            }
            if s.kernel == 1 {
                matmul_ab(o, weight, &input[n * s.input_len()..(n + 1) * s.input_len()], s.out_channels, pixels, patch, true);
            } else {
                im2col(&s, &input[n * s.input_len()..(n + 1) * s.input_len()], &mut col);
                matmul_ab(o, weight, &col, s.out_channels, pixels, patch, true);
            }
        }
        block
    });
    let mut at = 0;
    for b in blocks {
        out[at..at + b.len()].copy_from_slice(&b);
        at += b.len();
    }
}

/// Gradients of a convolution: given `grad_out` (the loss's gradient with respect to the
/// output of [`conv2d_forward`] on `input`), returns the gradients with respect to the input,
/// the weights and the biases.
///
/// # Panics
/// As [`conv2d_forward`].
pub fn conv2d_backward(s: Conv2dShape, input: &[f32], weight: &[f32], grad_out: &[f32]) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    s.check(input.len(), weight.len(), s.out_channels, grad_out.len());
    let (pixels, patch) = (s.pixels(), s.patch_len());
    let parts = over_images(&s, |range| {
        let mut col = vec![0.0f32; patch * pixels];
        let mut grad_col = vec![0.0f32; patch * pixels];
        let mut g_in = vec![0.0f32; range.len() * s.input_len()];
        let mut g_w = vec![0.0f32; s.weight_len()];
        let mut g_b = vec![0.0f32; s.out_channels];
        for (i, n) in range.enumerate() {
            let g = &grad_out[n * s.output_len()..(n + 1) * s.output_len()];
            let x = &input[n * s.input_len()..(n + 1) * s.input_len()];
            for (c, plane) in g.chunks(pixels).enumerate() {
                g_b[c] += plane.iter().sum::<f32>();
            }
            let gi = &mut g_in[i * s.input_len()..(i + 1) * s.input_len()];
            if s.kernel == 1 {
                // out = W x: ∂x = Wᵀ g, ∂W += g xᵀ.
                matmul_at_b(gi, weight, g, patch, pixels, s.out_channels, false);
                matmul_a_bt(&mut g_w, g, x, s.out_channels, patch, pixels, true);
            } else {
                im2col(&s, x, &mut col);
                matmul_a_bt(&mut g_w, g, &col, s.out_channels, patch, pixels, true);
                matmul_at_b(&mut grad_col, weight, g, patch, pixels, s.out_channels, false);
                col2im_add(&s, &grad_col, gi);
            }
        }
        (g_in, g_w, g_b)
    });
    let mut grad_input = Vec::with_capacity(input.len());
    let mut grad_weight = vec![0.0f32; s.weight_len()];
    let mut grad_bias = vec![0.0f32; s.out_channels];
    for (g_in, g_w, g_b) in parts {
        grad_input.extend_from_slice(&g_in);
        grad_weight.iter_mut().zip(&g_w).for_each(|(a, b)| *a += b);
        grad_bias.iter_mut().zip(&g_b).for_each(|(a, b)| *a += b);
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

    /// Direct convolution in f64, the reference.
    fn naive(s: &Conv2dShape, x: &[f32], w: &[f32], b: &[f32]) -> Vec<f64> {
        let (h, wd, k, r) = (s.height as isize, s.width as isize, s.kernel as isize, (s.kernel / 2) as isize);
        let mut out = vec![0.0f64; s.batch * s.output_len()];
        for n in 0..s.batch {
            for o in 0..s.out_channels {
                for y in 0..h {
                    for xx in 0..wd {
                        let mut acc = b[o] as f64;
                        for c in 0..s.in_channels {
                            for dy in 0..k {
                                for dx in 0..k {
                                    let (sy, sx) = (y + dy - r, xx + dx - r);
                                    if sy >= 0 && sy < h && sx >= 0 && sx < wd {
                                        let wi = ((o * s.in_channels + c) * s.kernel + dy as usize) * s.kernel + dx as usize;
                                        let xi = n * s.input_len() + c * s.pixels() + (sy * wd + sx) as usize;
                                        acc += w[wi] as f64 * x[xi] as f64;
                                    }
                                }
                            }
                        }
                        out[n * s.output_len() + o * s.pixels() + (y * wd + xx) as usize] = acc;
                    }
                }
            }
        }
        out
    }

    fn shapes() -> Vec<Conv2dShape> {
        vec![
            Conv2dShape { batch: 3, in_channels: 2, out_channels: 3, height: 5, width: 4, kernel: 3 },
            Conv2dShape { batch: 5, in_channels: 4, out_channels: 2, height: 3, width: 3, kernel: 1 },
            Conv2dShape { batch: 2, in_channels: 1, out_channels: 2, height: 6, width: 7, kernel: 5 },
        ]
    }

    #[test]
    fn forward_matches_a_direct_convolution() {
        let mut rng = Rng::new(1);
        for s in shapes() {
            let (x, w, b) = (random(s.batch * s.input_len(), &mut rng), random(s.weight_len(), &mut rng), random(s.out_channels, &mut rng));
            let mut out = vec![0.0; s.batch * s.output_len()];
            conv2d_forward(s, &x, &w, &b, &mut out);
            for (a, e) in out.iter().zip(naive(&s, &x, &w, &b)) {
                assert!((*a as f64 - e).abs() < 1e-4 * (1.0 + e.abs()), "{s:?}: {a} vs {e}");
            }
        }
    }

    #[test]
    fn gradients_match_finite_differences_in_f64() {
        let mut rng = Rng::new(2);
        for s in shapes() {
            let (x, w, b) = (random(s.batch * s.input_len(), &mut rng), random(s.weight_len(), &mut rng), random(s.out_channels, &mut rng));
            // Loss L = Σ g ⊙ conv(x): its gradient with respect to the output is g.
            let g = random(s.batch * s.output_len(), &mut rng);
            let loss = |x: &[f32], w: &[f32], b: &[f32]| -> f64 { naive(&s, x, w, b).iter().zip(&g).map(|(o, gi)| o * *gi as f64).sum() };
            let (gx, gw, gb) = conv2d_backward(s, &x, &w, &g);
            let eps = 1e-2f32;
            let check = |name: &str, analytic: &[f32], values: &[f32], perturb: &dyn Fn(&[f32]) -> f64| {
                for i in (0..values.len()).step_by((values.len() / 7).max(1)) {
                    let (mut up, mut down) = (values.to_vec(), values.to_vec());
                    up[i] += eps;
                    down[i] -= eps;
                    let fd = (perturb(&up) - perturb(&down)) / (2.0 * eps as f64);
                    assert!((analytic[i] as f64 - fd).abs() < 1e-3 * (1.0 + fd.abs()), "{s:?} {name}[{i}]: {} vs {fd}", analytic[i]);
                }
            };
            check("input", &gx, &x, &|v| loss(v, &w, &b));
            check("weight", &gw, &w, &|v| loss(&x, v, &b));
            check("bias", &gb, &b, &|v| loss(&x, &w, v));
        }
    }

    #[test]
    fn results_do_not_depend_on_how_the_batch_is_split() {
        let mut rng = Rng::new(3);
        let s = Conv2dShape { batch: 9, in_channels: 3, out_channels: 4, height: 4, width: 4, kernel: 3 };
        let (x, w, b) = (random(s.batch * s.input_len(), &mut rng), random(s.weight_len(), &mut rng), random(s.out_channels, &mut rng));
        let mut whole = vec![0.0; s.batch * s.output_len()];
        conv2d_forward(s, &x, &w, &b, &mut whole);
        for n in 0..s.batch {
            let one = Conv2dShape { batch: 1, ..s };
            let mut out = vec![0.0; one.output_len()];
            conv2d_forward(one, &x[n * s.input_len()..(n + 1) * s.input_len()], &w, &b, &mut out);
            assert_eq!(out, whole[n * s.output_len()..(n + 1) * s.output_len()]);
        }
    }
}
