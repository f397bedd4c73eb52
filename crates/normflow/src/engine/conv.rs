//! 2-D convolution for image flows (stride 1, "same" zero padding, odd square kernels, 1×1
//! included): forward, input gradient and weight/bias gradients, as matrix products (`gemm`).
//! Each worker thread takes a contiguous block of the batch and gathers its images in groups
//! into one wide matrix per product; a k×k convolution goes through im2col when it widens the
//! channels, and through a stacked-weight product with shifted sums (no im2col) when it
//! narrows them (see `Plan`).
//!
//! Layout: an image is one row of `channels × height × width` values (C×H×W, row-major), a
//! batch is `batch` such rows; weights are `[out_channels, in_channels, k, k]`, biases
//! `[out_channels]`.

use serde::{Deserialize, Serialize};

use super::matmul::{matmul_a_bt, matmul_ab, matmul_at_b};
use super::pool;

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

/// Pixels per product: a worker takes its images in groups whose pixels add up to about this
/// many, so that a small image (7×7, 14×14) still gives the product a wide matrix.
const GROUP_PIXELS: usize = 1024;

/// How a convolution maps onto matrix products.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Plan {
    /// 1×1: `out = W x`, one product.
    Pointwise,
    /// `k×k` with at least as many output channels as input channels: im2col (one row per
    /// input channel and kernel offset), then `out = W col`.
    InputSide,
    /// `k×k` with fewer output channels than input channels (a conditioner's last layer):
    /// `Z = W_stack x` with the k² offset slices of W stacked as rows, then each slice of Z
    /// shifted onto the output. No im2col, and a product k² times taller than the output.
    OutputSide,
}

impl Conv2dShape {
    fn plan(&self) -> Plan {
        match self.kernel {
            1 => Plan::Pointwise,
            _ if self.out_channels < self.in_channels => Plan::OutputSide,
            _ => Plan::InputSide,
        }
    }

    /// Images per product group.
    fn group(&self) -> usize {
        GROUP_PIXELS.div_ceil(self.pixels().max(1)).max(1)
    }

    /// Kernel offsets `(dy, dx)` in row-major order, as signed shifts from the centre.
    fn offsets(&self) -> impl Iterator<Item = (isize, isize)> {
        let (k, r) = (self.kernel as isize, (self.kernel / 2) as isize);
        (0..k * k).map(move |i| (i / k - r, i % k - r))
    }
}

/// Copies `images` consecutive images of `channels × pixels` values from `src` into `dst` as
/// one `channels × (images · pixels)` matrix (channel-major across the group).
fn gather(src: &[f32], images: usize, channels: usize, pixels: usize, dst: &mut [f32]) {
    let cols = images * pixels;
    for i in 0..images {
        for c in 0..channels {
            dst[c * cols + i * pixels..][..pixels].copy_from_slice(&src[(i * channels + c) * pixels..][..pixels]);
        }
    }
}

/// The inverse of [`gather`]: writes (or adds, with `add`) the group matrix back as images.
fn scatter(src: &[f32], images: usize, channels: usize, pixels: usize, dst: &mut [f32], add: bool) {
    let cols = images * pixels;
    for i in 0..images {
        for c in 0..channels {
            let (from, to) = (&src[c * cols + i * pixels..][..pixels], &mut dst[(i * channels + c) * pixels..][..pixels]);
            if add {
                to.iter_mut().zip(from).for_each(|(t, f)| *t += f);
            } else {
                to.copy_from_slice(from);
            }
        }
    }
}

/// For every pixel `(y, x)` of an `h × w` plane whose shift `(y + dy, x + dx)` lies inside,
/// `dst[y, x] += src[y + dy, x + dx]`: a shifted copy with zero padding, row segment by segment.
fn add_shifted(dst: &mut [f32], src: &[f32], h: usize, w: usize, (dy, dx): (isize, isize)) {
    let (ys, xs) = (valid(h, dy), valid(w, dx));
    for y in ys {
        let sy = (y as isize + dy) as usize;
        let (d, s) = (&mut dst[y * w..][xs.clone()], &src[sy * w + (xs.start as isize + dx) as usize..][..xs.len()]);
        d.iter_mut().zip(s).for_each(|(a, b)| *a += b);
    }
}

/// The positions `p` in `0..n` with `p + shift` also in `0..n`.
fn valid(n: usize, shift: isize) -> std::ops::Range<usize> {
    let lo = (-shift).max(0) as usize;
    let hi = (n as isize - shift.max(0)).max(lo as isize) as usize;
    lo.min(n)..hi.min(n)
}

/// im2col of a group: row `(c, offset)` of `col` (`images · pixels` columns) holds channel `c`
/// of each image shifted by the kernel offset, zero outside the image. `x` is the group as
/// gathered by [`gather`].
fn im2col(s: &Conv2dShape, x: &[f32], images: usize, col: &mut [f32]) {
    let (h, w, p) = (s.height, s.width, s.pixels());
    let cols = images * p;
    col[..s.patch_len() * cols].fill(0.0);
    for c in 0..s.in_channels {
        for (k, off) in s.offsets().enumerate() {
            let row = &mut col[(c * s.kernel * s.kernel + k) * cols..][..cols];
            for i in 0..images {
                add_shifted(&mut row[i * p..][..p], &x[c * cols + i * p..][..p], h, w, off);
            }
        }
    }
}

/// The adjoint of [`im2col`]: adds each row of `col` back onto the pixels it was read from.
fn col2im_add(s: &Conv2dShape, col: &[f32], images: usize, x: &mut [f32]) {
    let (h, w, p) = (s.height, s.width, s.pixels());
    let cols = images * p;
    for c in 0..s.in_channels {
        for (k, (dy, dx)) in s.offsets().enumerate() {
            let row = &col[(c * s.kernel * s.kernel + k) * cols..][..cols];
            for i in 0..images {
                add_shifted(&mut x[c * cols + i * p..][..p], &row[i * p..][..p], h, w, (-dy, -dx));
            }
        }
    }
}

/// W `[out, in, k, k]` restacked as `[k² · out, in]`: one `out × in` slice per kernel offset.
fn stack_weight(s: &Conv2dShape, weight: &[f32], stacked: &mut [f32]) {
    let kk = s.kernel * s.kernel;
    for o in 0..s.out_channels {
        for c in 0..s.in_channels {
            for k in 0..kk {
                stacked[(k * s.out_channels + o) * s.in_channels + c] = weight[(o * s.in_channels + c) * kk + k];
            }
        }
    }
}

/// The inverse of [`stack_weight`], added onto `weight`.
fn unstack_weight_add(s: &Conv2dShape, stacked: &[f32], weight: &mut [f32]) {
    let kk = s.kernel * s.kernel;
    for o in 0..s.out_channels {
        for c in 0..s.in_channels {
            for k in 0..kk {
                weight[(o * s.in_channels + c) * kk + k] += stacked[(k * s.out_channels + o) * s.in_channels + c];
            }
        }
    }
}

/// A worker's share of a convolution: its images, their input values, their output values.
type ImageBlockWork<'a> = dyn Fn(std::ops::Range<usize>, &[f32], &mut [f32]) + Sync + 'a;

/// Splits the batch over the workers; each runs `f(images, input_block, output_block)` on its
/// contiguous block of images, its slices of `input` and `out` (`in_len`, `out_len` values
/// per image).
fn over_image_blocks(batch: usize, input: &[f32], in_len: usize, out: &mut [f32], out_len: usize, f: &ImageBlockWork) {
    let parts = super::threads::worker_count(batch, MIN_IMAGES_PER_THREAD);
    let base = SendMut(out.as_mut_ptr());
    super::threads::for_each_part(parts, &|p| {
        let r = super::threads::part_range(batch, parts, p);
        // SAFETY: the parts' image ranges are disjoint and `out` stays mutably borrowed until
        // every part has finished.
        let block = unsafe { std::slice::from_raw_parts_mut(base.get().add(r.start * out_len), r.len() * out_len) };
        f(r.clone(), &input[r.start * in_len..r.end * in_len], block);
    });
}

/// A raw output pointer the parts share; each writes only its own images.
#[derive(Clone, Copy)]
struct SendMut(*mut f32);

impl SendMut {
    fn get(self) -> *mut f32 {
        self.0
    }
}

// SAFETY: see `over_image_blocks`: every part writes a disjoint region.
unsafe impl Send for SendMut {}
// SAFETY: as above.
unsafe impl Sync for SendMut {}

/// `out = conv(input, weight) + bias` for every image of the batch.
///
/// # Panics
/// If a slice's length does not match `shape` or the kernel is even (callers check shapes once,
/// where an image layer meets its input).
pub fn conv2d_forward(s: Conv2dShape, input: &[f32], weight: &[f32], bias: &[f32], out: &mut [f32]) {
    s.check(input.len(), weight.len(), bias.len(), out.len());
    let plan = s.plan();
    let stacked = (plan == Plan::OutputSide).then(|| {
        let mut w = pool::scratch(s.weight_len());
        stack_weight(&s, weight, &mut w);
        w
    });
    let (pixels, group) = (s.pixels(), s.group());
    over_image_blocks(s.batch, input, s.input_len(), out, s.output_len(), &|range, input, out| {
        let mut x = pool::scratch(s.in_channels * group * pixels);
        let mut y = pool::scratch(s.out_channels * group * pixels);
        let mut work = pool::scratch(match plan {
            Plan::Pointwise => 0,
            Plan::InputSide => s.patch_len() * group * pixels,
            Plan::OutputSide => s.kernel * s.kernel * s.out_channels * group * pixels,
        });
        for first in (0..range.len()).step_by(group) {
            let n = group.min(range.len() - first);
            let cols = n * pixels;
            gather(&input[first * s.input_len()..], n, s.in_channels, pixels, &mut x);
            for (c, row) in y.chunks_mut(cols).take(s.out_channels).enumerate() {
                row.fill(bias[c]);
            }
            match plan {
                Plan::Pointwise => matmul_ab(&mut y, weight, &x, s.out_channels, cols, s.in_channels, true),
                Plan::InputSide => {
                    im2col(&s, &x, n, &mut work);
                    matmul_ab(&mut y, weight, &work, s.out_channels, cols, s.patch_len(), true);
                }
                Plan::OutputSide => {
                    let w = stacked.as_deref().expect("stacked for this plan");
                    let rows = s.kernel * s.kernel * s.out_channels;
                    matmul_ab(&mut work, w, &x, rows, cols, s.in_channels, false);
                    for (k, off) in s.offsets().enumerate() {
                        for o in 0..s.out_channels {
                            let z = &work[(k * s.out_channels + o) * cols..][..cols];
                            let dst = &mut y[o * cols..][..cols];
                            for i in 0..n {
                                add_shifted(&mut dst[i * pixels..][..pixels], &z[i * pixels..][..pixels], s.height, s.width, off);
                            }
                        }
                    }
                }
            }
            scatter(&y, n, s.out_channels, pixels, &mut out[first * s.output_len()..], false);
        }
        for v in [x, y, work] {
            pool::give(v);
        }
    });
    if let Some(w) = stacked {
        pool::give(w);
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
    let plan = s.plan();
    let kk = s.kernel * s.kernel;
    let stacked = (plan == Plan::OutputSide).then(|| {
        let mut w = pool::scratch(s.weight_len());
        stack_weight(&s, weight, &mut w);
        w
    });
    let (pixels, group) = (s.pixels(), s.group());
    let mut grad_input = pool::scratch(input.len());
    let parts = super::threads::worker_count(s.batch, MIN_IMAGES_PER_THREAD);
    // Per-part weight and bias gradients, summed after.
    let partial: Vec<std::sync::Mutex<(Vec<f32>, Vec<f32>)>> =
        (0..parts).map(|_| std::sync::Mutex::new((Vec::new(), Vec::new()))).collect();
    let next = std::sync::atomic::AtomicUsize::new(0);
    over_image_blocks(s.batch, grad_out, s.output_len(), &mut grad_input, s.input_len(), &|range, g_all, gi_all| {
        let x_all = &input[range.start * s.input_len()..range.end * s.input_len()];
        let mut x = pool::scratch(s.in_channels * group * pixels);
        let mut g = pool::scratch(s.out_channels * group * pixels);
        let mut gx = pool::scratch(s.in_channels * group * pixels);
        let mut work = pool::scratch(match plan {
            Plan::Pointwise => 0,
            Plan::InputSide => 2 * s.patch_len() * group * pixels,
            Plan::OutputSide => kk * s.out_channels * group * pixels,
        });
        let mut gw = pool::zeroed(s.weight_len());
        let mut gb = pool::zeroed(s.out_channels);
        for first in (0..range.len()).step_by(group) {
            let n = group.min(range.len() - first);
            let cols = n * pixels;
            gather(&x_all[first * s.input_len()..], n, s.in_channels, pixels, &mut x);
            gather(&g_all[first * s.output_len()..], n, s.out_channels, pixels, &mut g);
            for (c, row) in g.chunks(cols).take(s.out_channels).enumerate() {
                gb[c] += row.iter().sum::<f32>();
            }
            match plan {
                Plan::Pointwise => {
                    // out = W x: ∂x = Wᵀ g, ∂W += g xᵀ.
                    matmul_at_b(&mut gx, weight, &g, s.in_channels, cols, s.out_channels, false);
                    matmul_a_bt(&mut gw, &g, &x, s.out_channels, s.in_channels, cols, true);
                }
                Plan::InputSide => {
                    let (col, grad_col) = work.split_at_mut(s.patch_len() * group * pixels);
                    im2col(&s, &x, n, col);
                    matmul_a_bt(&mut gw, &g, col, s.out_channels, s.patch_len(), cols, true);
                    matmul_at_b(grad_col, weight, &g, s.patch_len(), cols, s.out_channels, false);
                    gx[..s.in_channels * cols].fill(0.0);
                    col2im_add(&s, grad_col, n, &mut gx);
                }
                Plan::OutputSide => {
                    // out = Σ_k shift_k(W_k x): ∂Z_k = shift_k⁻¹(g), ∂x = W_stackᵀ ∂Z, ∂W_stack += ∂Z xᵀ.
                    let rows = kk * s.out_channels;
                    work[..rows * cols].fill(0.0);
                    for (k, (dy, dx)) in s.offsets().enumerate() {
                        for o in 0..s.out_channels {
                            let dz = &mut work[(k * s.out_channels + o) * cols..][..cols];
                            for i in 0..n {
                                add_shifted(
                                    &mut dz[i * pixels..][..pixels],
                                    &g[o * cols + i * pixels..][..pixels],
                                    s.height,
                                    s.width,
                                    (-dy, -dx),
                                );
                            }
                        }
                    }
                    let w = stacked.as_deref().expect("stacked for this plan");
                    matmul_at_b(&mut gx, w, &work, s.in_channels, cols, rows, false);
                    // gw holds the stacked layout on this plan; unstacked after the sum.
                    matmul_a_bt(&mut gw, &work, &x, rows, s.in_channels, cols, true);
                }
            }
            scatter(&gx, n, s.in_channels, pixels, &mut gi_all[first * s.input_len()..], false);
        }
        for v in [x, g, gx, work] {
            pool::give(v);
        }
        let slot = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        *partial[slot].lock().unwrap_or_else(|e| e.into_inner()) = (gw, gb);
    });
    let mut grad_weight = vec![0.0f32; s.weight_len()];
    let mut grad_bias = vec![0.0f32; s.out_channels];
    let mut summed = pool::zeroed(s.weight_len());
    for slot in partial {
        let (gw, gb) = slot.into_inner().unwrap_or_else(|e| e.into_inner());
        if gw.is_empty() {
            continue;
        }
        summed.iter_mut().zip(&gw).for_each(|(a, b)| *a += b);
        grad_bias.iter_mut().zip(&gb).for_each(|(a, b)| *a += b);
        pool::give(gw);
        pool::give(gb);
    }
    if plan == Plan::OutputSide {
        unstack_weight_add(&s, &summed, &mut grad_weight);
    } else {
        grad_weight.copy_from_slice(&summed);
    }
    pool::give(summed);
    if let Some(w) = stacked {
        pool::give(w);
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
            // Fewer outputs than inputs: the output-side plan.
            Conv2dShape { batch: 3, in_channels: 5, out_channels: 2, height: 4, width: 5, kernel: 3 },
            Conv2dShape { batch: 2, in_channels: 6, out_channels: 3, height: 3, width: 7, kernel: 5 },
            // Images of 576 pixels: groups of two images per product, the last group short.
            Conv2dShape { batch: 5, in_channels: 2, out_channels: 3, height: 24, width: 24, kernel: 3 },
            Conv2dShape { batch: 5, in_channels: 3, out_channels: 2, height: 24, width: 24, kernel: 3 },
            Conv2dShape { batch: 5, in_channels: 3, out_channels: 2, height: 24, width: 24, kernel: 1 },
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
