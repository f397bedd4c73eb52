//! 2-D convolution for image flows (stride 1, "same" zero padding, odd square kernels, 1×1
//! included): forward, input gradient and weight/bias gradients, as matrix products (`gemm`).
//! Each worker thread takes a contiguous block of the batch and gathers its images in groups
//! into one wide matrix per product (the passes on one group are `conv_group::GroupConv`'s).
//!
//! Layout: an image is one row of `channels × height × width` values (C×H×W, row-major), a
//! batch is `batch` such rows; weights are `[out_channels, in_channels, k, k]`, biases
//! `[out_channels]`.

use serde::{Deserialize, Serialize};

use super::conv_group::{gather, group_images, groups, scatter, GroupConv};
use super::pool::{self, LineBuf};

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
    pub(crate) fn pixels(&self) -> usize {
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

    /// Weight values per output channel: `in_channels · kernel²`.
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

/// The batch's images split into one contiguous range per worker.
pub(crate) fn image_parts(batch: usize) -> Vec<std::ops::Range<usize>> {
    super::threads::split_rows(batch, super::threads::worker_count(batch, MIN_IMAGES_PER_THREAD))
}

/// A worker's share of a batch: its part number, its images and its regions of the buffers.
pub(crate) type ImagePartWork<'a> = dyn Fn(usize, std::ops::Range<usize>, Vec<&mut [f32]>) + Sync + 'a;

/// Runs `f(part, images, regions)` in parallel for each range of `parts` (contiguous, in
/// order, covering the batch): `regions[j]` is that range's slice of `buffers[j]`, which holds
/// `per_image[j]` values per image.
pub(crate) fn for_each_image_part(parts: &[std::ops::Range<usize>], buffers: Vec<&mut [f32]>, per_image: &[usize], f: &ImagePartWork) {
    let mut slots: Vec<Vec<&mut [f32]>> = parts.iter().map(|_| Vec::with_capacity(buffers.len())).collect();
    for (buffer, &len) in buffers.into_iter().zip(per_image) {
        let mut rest = buffer;
        for (slot, r) in slots.iter_mut().zip(parts) {
            let (mine, tail) = rest.split_at_mut(r.len() * len);
            slot.push(mine);
            rest = tail;
        }
    }
    let slots: Vec<std::sync::Mutex<Option<Vec<&mut [f32]>>>> = slots.into_iter().map(|s| std::sync::Mutex::new(Some(s))).collect();
    super::threads::for_each_part(parts.len(), &|p| {
        let regions = slots[p].lock().unwrap_or_else(|e| e.into_inner()).take().expect("each part runs once");
        f(p, parts[p].clone(), regions);
    });
}

/// `out = conv(input, weight) + bias` for every image of the batch.
///
/// # Panics
/// If a slice's length does not match `shape` or the kernel is even (callers check shapes once,
/// where an image layer meets its input).
pub fn conv2d_forward(s: Conv2dShape, input: &[f32], weight: &[f32], bias: &[f32], out: &mut [f32]) {
    s.check(input.len(), weight.len(), bias.len(), out.len());
    let conv = GroupConv::new(s, weight, bias);
    let (pixels, group) = (s.pixels(), group_images(s.pixels()));
    for_each_image_part(&image_parts(s.batch), vec![out], &[s.output_len()], &|_, range, mut regions| {
        let out = &mut regions[0];
        let input = &input[range.start * s.input_len()..range.end * s.input_len()];
        let mut x = LineBuf::scratch(s.in_channels * group * pixels);
        let mut y = LineBuf::scratch(s.out_channels * group * pixels);
        let mut work = LineBuf::scratch(conv.work_len(group));
        for images in groups(range.len(), pixels) {
            let (first, n) = (images.start, images.len());
            gather(&input[first * s.input_len()..], n, s.in_channels, pixels, &mut x);
            conv.forward(n, &x, &mut y, &mut work, false);
            scatter(&y, n, s.out_channels, pixels, &mut out[first * s.output_len()..], false);
        }
    });
}

/// Gradients of a convolution: given `grad_out` (the loss's gradient with respect to the
/// output of [`conv2d_forward`] on `input`), returns the gradients with respect to the input,
/// the weights and the biases.
///
/// # Panics
/// As [`conv2d_forward`].
pub fn conv2d_backward(s: Conv2dShape, input: &[f32], weight: &[f32], grad_out: &[f32]) -> (Vec<f32>, Vec<f32>, Vec<f32>) {
    s.check(input.len(), weight.len(), s.out_channels, grad_out.len());
    // The biases do not enter the gradients.
    let zero_bias = pool::zeroed(s.out_channels);
    let conv = GroupConv::new(s, weight, &zero_bias);
    let (pixels, group) = (s.pixels(), group_images(s.pixels()));
    let mut grad_input = pool::scratch(input.len());
    let parts = image_parts(s.batch);
    // Per-part weight and bias gradients, summed after.
    let partial: Vec<std::sync::Mutex<(Vec<f32>, Vec<f32>)>> =
        parts.iter().map(|_| std::sync::Mutex::new((Vec::new(), Vec::new()))).collect();
    for_each_image_part(&parts, vec![&mut grad_input], &[s.input_len()], &|p, range, mut regions| {
        let gi_all = &mut regions[0];
        let x_all = &input[range.start * s.input_len()..range.end * s.input_len()];
        let g_all = &grad_out[range.start * s.output_len()..range.end * s.output_len()];
        let mut x = LineBuf::scratch(s.in_channels * group * pixels);
        let mut g = LineBuf::scratch(s.out_channels * group * pixels);
        let mut gx = LineBuf::scratch(s.in_channels * group * pixels);
        let mut work = LineBuf::scratch(conv.work_len(group));
        let mut gw = pool::zeroed(conv.weight_grad_len());
        let mut gb = pool::zeroed(s.out_channels);
        for images in groups(range.len(), pixels) {
            let (first, n) = (images.start, images.len());
            gather(&x_all[first * s.input_len()..], n, s.in_channels, pixels, &mut x);
            gather(&g_all[first * s.output_len()..], n, s.out_channels, pixels, &mut g);
            conv.backward(n, &x, &g, &mut gx, &mut gw, &mut gb, &mut work);
            scatter(&gx, n, s.in_channels, pixels, &mut gi_all[first * s.input_len()..], false);
        }
        *partial[p].lock().unwrap_or_else(|e| e.into_inner()) = (gw, gb);
    });
    let mut grad_weight = vec![0.0f32; s.weight_len()];
    let mut grad_bias = vec![0.0f32; s.out_channels];
    for slot in partial {
        let (gw, gb) = slot.into_inner().unwrap_or_else(|e| e.into_inner());
        conv.add_weight_grad(&gw, &mut grad_weight);
        grad_bias.iter_mut().zip(&gb).for_each(|(a, b)| *a += b);
        pool::give(gw);
        pool::give(gb);
    }
    drop(conv);
    pool::give(zero_bias);
    (grad_input, grad_weight, grad_bias)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::isa::{self, Isa};
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
            // 14×14 images: groups of four (784 pixels, whole 16-lane vectors) and a short last
            // group (196 pixels, a masked tail) through the tiled products, both plans.
            Conv2dShape { batch: 9, in_channels: 2, out_channels: 20, height: 14, width: 14, kernel: 3 },
            Conv2dShape { batch: 5, in_channels: 20, out_channels: 3, height: 14, width: 14, kernel: 3 },
            // Images smaller than the kernel: shifts past the whole group row.
            Conv2dShape { batch: 1, in_channels: 2, out_channels: 3, height: 1, width: 1, kernel: 5 },
            Conv2dShape { batch: 1, in_channels: 3, out_channels: 2, height: 1, width: 2, kernel: 5 },
        ]
    }

    #[test]
    fn forward_matches_a_direct_convolution() {
        let mut rng = Rng::new(1);
        for s in shapes() {
            let (x, w, b) = (random(s.batch * s.input_len(), &mut rng), random(s.weight_len(), &mut rng), random(s.out_channels, &mut rng));
            for isa in Isa::supported() {
                let mut out = vec![0.0; s.batch * s.output_len()];
                isa::with_isa(isa, || conv2d_forward(s, &x, &w, &b, &mut out));
                for (a, e) in out.iter().zip(naive(&s, &x, &w, &b)) {
                    assert!((*a as f64 - e).abs() < 1e-4 * (1.0 + e.abs()), "{isa:?} {s:?}: {a} vs {e}");
                }
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
            let eps = 1e-2f32;
            for isa in Isa::supported() {
                let (gx, gw, gb) = isa::with_isa(isa, || conv2d_backward(s, &x, &w, &g));
                let check = |name: &str, analytic: &[f32], values: &[f32], perturb: &dyn Fn(&[f32]) -> f64| {
                    for i in (0..values.len()).step_by((values.len() / 7).max(1)) {
                        let (mut up, mut down) = (values.to_vec(), values.to_vec());
                        up[i] += eps;
                        down[i] -= eps;
                        let fd = (perturb(&up) - perturb(&down)) / (2.0 * eps as f64);
                        assert!(
                            (analytic[i] as f64 - fd).abs() < 1e-3 * (1.0 + fd.abs()),
                            "{isa:?} {s:?} {name}[{i}]: {} vs {fd}",
                            analytic[i]
                        );
                    }
                };
                check("input", &gx, &x, &|v| loss(v, &w, &b));
                check("weight", &gw, &w, &|v| loss(&x, v, &b));
                check("bias", &gb, &b, &|v| loss(&x, &w, v));
            }
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
