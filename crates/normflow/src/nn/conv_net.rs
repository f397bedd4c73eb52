//! The convolutional coupling networks on image rows, with a hand-derived backward pass through
//! the engine's convolution kernels. Glow's (Kingma & Dhariwal 2018, arXiv:1807.03039, §3.3):
//! 3×3 convolution → ReLU → 1×1 convolution → ReLU → 3×3 convolution. RealNVP's residual network
//! (Dinh et al. 2017, arXiv:1605.08803, §3.6): a 3×3 convolution → ReLU, then residual blocks
//! `h ← ReLU(h + conv3×3(ReLU(conv3×3(h))))`, then the output 3×3 convolution. Either way the
//! last convolution starts at zero, so that a new coupling is the identity.

use crate::engine::pool::LineBuf;
use crate::engine::{self, fastmath, group_images, pool, Conv2dShape, GroupConv, ImageShape, Matrix, Rng};

/// The three convolutions' shapes and where their weights and biases sit in the flat
/// parameters.
#[derive(Clone, Copy, Debug)]
struct Layer {
    in_channels: usize,
    out_channels: usize,
    kernel: usize,
}

impl Layer {
    fn weights(&self) -> usize {
        self.out_channels * self.in_channels * self.kernel * self.kernel
    }

    fn len(&self) -> usize {
        self.weights() + self.out_channels
    }

    fn shape(&self, batch: usize, image: ImageShape) -> Conv2dShape {
        Conv2dShape {
            batch,
            in_channels: self.in_channels,
            out_channels: self.out_channels,
            height: image.height,
            width: image.width,
            kernel: self.kernel,
        }
    }
}

/// A convolutional conditioner from images of `input` channels to `out_channels` channels of the
/// same height and width, through hidden layers of `hidden` channels.
#[derive(Clone, Debug)]
pub struct ConvNet {
    image: ImageShape,
    /// Context values appended to each input row, each broadcast as one constant input plane.
    context_dim: usize,
    /// Residual blocks (0: Glow's 3×3 → 1×1 → 3×3 network).
    blocks: usize,
    layers: Vec<Layer>,
    params: Vec<f32>,
}

/// What [`ConvNet::backward`] needs from a forward pass: each convolution's input, in group
/// layout (see `engine::conv_group`), and how the batch was split over the workers (the
/// groups follow from it).
#[derive(Debug)]
pub struct ConvNetCache {
    inputs: Vec<LineBuf>,
    rows: usize,
    parts: Vec<std::ops::Range<usize>>,
}

/// A network's layers prepared for one batch of group passes (see [`ConvNet::group_passes`]).
struct GroupPasses<'a> {
    convs: Vec<GroupConv<'a>>,
    /// Images per group.
    group: usize,
    /// Most channels any layer reads or writes.
    widest: usize,
    /// Scratch values the hungriest layer needs per group.
    work_len: usize,
}

impl ConvNet {
    /// A network for input images of shape `input`, with `hidden` channels and `out_channels`
    /// output channels: the first two layers drawn from `N(0, 1/fan_in)`, the last one zero.
    pub fn new(input: ImageShape, hidden: usize, out_channels: usize, rng: &mut Rng) -> Self {
        Self::with_context(input, 0, hidden, out_channels, rng)
    }

    /// As [`ConvNet::new`], for input rows that hold an image followed by `context_dim` context
    /// values (a one-hot class, say); each context value enters the first convolution as a
    /// constant plane.
    pub fn with_context(input: ImageShape, context_dim: usize, hidden: usize, out_channels: usize, rng: &mut Rng) -> Self {
        Self::residual(input, context_dim, hidden, 0, out_channels, rng)
    }

    /// As [`ConvNet::with_context`] with `blocks` residual blocks of two 3×3 convolutions each
    /// (RealNVP's network; 0 gives Glow's).
    pub fn residual(input: ImageShape, context_dim: usize, hidden: usize, blocks: usize, out_channels: usize, rng: &mut Rng) -> Self {
        let first = Layer { in_channels: input.channels + context_dim, out_channels: hidden, kernel: 3 };
        let last = Layer { in_channels: hidden, out_channels, kernel: 3 };
        let mut layers = vec![first];
        if blocks == 0 {
            layers.push(Layer { in_channels: hidden, out_channels: hidden, kernel: 1 });
        } else {
            layers.extend(std::iter::repeat_n(Layer { in_channels: hidden, out_channels: hidden, kernel: 3 }, 2 * blocks));
        }
        layers.push(last);
        let mut params = Vec::with_capacity(layers.iter().map(Layer::len).sum());
        for (k, l) in layers.iter().enumerate() {
            let zero = k + 1 == layers.len();
            // The second convolution of a residual block starts small, so a block starts near
            // the identity.
            let scale = if blocks > 0 && k > 0 && k % 2 == 0 { 0.1 } else { 1.0 };
            let std = scale * (1.0 / (l.in_channels * l.kernel * l.kernel) as f64).sqrt();
            params.extend((0..l.weights()).map(|_| if zero { 0.0 } else { (std * rng.normal()) as f32 }));
            params.extend(std::iter::repeat_n(0.0, l.out_channels));
        }
        Self { image: input, context_dim, blocks, layers, params }
    }

    /// Residual blocks (0 for Glow's network).
    pub fn blocks(&self) -> usize {
        self.blocks
    }

    /// The first layer's input: each row's image, then its context values as constant planes.
    fn input_planes(&self, x: &Matrix) -> Vec<f32> {
        if self.context_dim == 0 {
            return pool::copied(x.as_slice());
        }
        let (len, p) = (self.image.len(), self.image.pixels());
        let mut h = pool::with_capacity(x.rows() * (len + self.context_dim * p));
        for r in 0..x.rows() {
            let row = x.row(r);
            h.extend_from_slice(&row[..len]);
            for &c in &row[len..] {
                h.extend(std::iter::repeat_n(c, p));
            }
        }
        h
    }

    /// Where layer `k`'s weights and biases start in the flat parameters.
    fn offset(&self, k: usize) -> usize {
        self.layers[..k].iter().map(Layer::len).sum()
    }

    /// `(weights, biases)` of layer `k`.
    fn layer_params(&self, k: usize) -> (&[f32], &[f32]) {
        let (start, l) = (self.offset(k), self.layers[k]);
        (&self.params[start..start + l.weights()], &self.params[start + l.weights()..start + l.len()])
    }

    /// The layers prepared for group passes, with the group size and scratch sizes they share.
    fn group_passes(&self) -> GroupPasses<'_> {
        let convs: Vec<GroupConv<'_>> = (0..self.layers.len())
            .map(|k| {
                let (w, b) = self.layer_params(k);
                GroupConv::new(self.layers[k].shape(0, self.image), w, b)
            })
            .collect();
        let group = group_images(self.image.pixels());
        let widest = self.layers.iter().map(|l| l.in_channels.max(l.out_channels)).max().unwrap_or(0);
        let work_len = convs.iter().map(|c| c.work_len(group)).max().unwrap_or(0);
        GroupPasses { convs, group, widest, work_len }
    }

    /// The output for a batch and each convolution's input (in group layout), split over the
    /// workers as `parts`. Every layer of a group of images runs while the group is in cache,
    /// and only the network's input and output change layout.
    fn run(&self, x: &Matrix, parts: &[std::ops::Range<usize>]) -> (Matrix, Vec<LineBuf>) {
        let (rows, p) = (x.rows(), self.image.pixels());
        let last = self.layers.len() - 1;
        let out_channels = self.layers[last].out_channels;
        let planes = self.input_planes(x);
        let GroupPasses { convs, group, widest, work_len } = self.group_passes();
        let mut inputs: Vec<LineBuf> = self.layers.iter().map(|l| LineBuf::scratch(rows * l.in_channels * p)).collect();
        let mut out = pool::scratch(rows * out_channels * p);
        let per_image: Vec<usize> = self.layers.iter().map(|l| l.in_channels * p).chain([out_channels * p]).collect();
        let buffers: Vec<&mut [f32]> = inputs.iter_mut().map(|v| &mut **v).chain([out.as_mut_slice()]).collect();
        engine::for_each_image_part(parts, buffers, &per_image, &|_, range, mut regions| {
            let planes = &planes[range.start * per_image[0]..range.end * per_image[0]];
            let mut work = LineBuf::scratch(work_len);
            let mut y = LineBuf::scratch(widest * group * p);
            for images in engine::groups(range.len(), p) {
                let (first, n) = (images.start, images.len());
                // Layer k's input for this group: `regions[k]` from image `first` on.
                let at = |k: usize| first * per_image[k]..(first + n) * per_image[k];
                engine::gather(&planes[at(0)], n, self.layers[0].in_channels, p, &mut regions[0][at(0)]);
                let mut k = 0;
                while k < last {
                    let (done, next) = regions.split_at_mut(k + 1);
                    if self.blocks > 0 && k > 0 {
                        // A residual block: h ← ReLU(h + conv_b(ReLU(conv_a(h)))).
                        let (u, v) = next.split_at_mut(1);
                        convs[k].forward(n, &done[k][at(k)], &mut u[0][at(k + 1)], &mut work, true);
                        let v = &mut v[0][at(k + 2)];
                        convs[k + 1].forward(n, &u[0][at(k + 1)], v, &mut work, false);
                        v.iter_mut().zip(&done[k][at(k)]).for_each(|(v, h)| *v = (*v + h).max(0.0));
                        k += 2;
                    } else {
                        convs[k].forward(n, &done[k][at(k)], &mut next[0][at(k + 1)], &mut work, true);
                        k += 1;
                    }
                }
                convs[last].forward(n, &regions[last][at(last)], &mut y, &mut work, false);
                engine::scatter(&y, n, out_channels, p, &mut regions[last + 1][at(last + 1)], false);
            }
        });
        drop(convs);
        pool::give(planes);
        (Matrix::from_vec(rows, out_channels * p, out), inputs)
    }

    /// Output for a batch of image rows.
    pub fn forward(&self, x: &Matrix) -> Matrix {
        self.run(x, &engine::image_parts(x.rows())).0
    }

    /// Output and backward cache.
    pub fn forward_cached(&self, x: &Matrix) -> (Matrix, ConvNetCache) {
        let parts = engine::image_parts(x.rows());
        let (out, inputs) = self.run(x, &parts);
        (out, ConvNetCache { inputs, rows: x.rows(), parts })
    }

    /// Writes the parameter gradients into `grads` (overwritten) and returns the input gradient.
    pub fn backward(&self, cache: &ConvNetCache, grad_out: Matrix, grads: &mut [f32]) -> Matrix {
        let p = self.image.pixels();
        let last = self.layers.len() - 1;
        let GroupPasses { convs, group, widest, work_len } = self.group_passes();
        let per_image: Vec<usize> = self.layers.iter().map(|l| l.in_channels * p).collect();
        let out_len = self.layers[last].out_channels * p;
        let offsets: Vec<usize> = (0..self.layers.len()).map(|k| self.offset(k)).collect();
        let mut g_in = pool::scratch(cache.rows * per_image[0]);
        // Per-part parameter gradients (weights in each plan's layout), summed after.
        let partial: Vec<std::sync::Mutex<Vec<f32>>> = cache.parts.iter().map(|_| std::sync::Mutex::new(Vec::new())).collect();
        engine::for_each_image_part(&cache.parts, vec![g_in.as_mut_slice()], &per_image[..1], &|part, range, mut regions| {
            let mut part_grads = pool::zeroed(self.params.len());
            let mut work = LineBuf::scratch(work_len);
            let [mut g, mut g_next, mut g_side] = [(); 3].map(|_| LineBuf::scratch(widest * group * p));
            for images in engine::groups(range.len(), p) {
                let (first, n) = (images.start, images.len());
                let at = |k: usize| (range.start + first) * per_image[k]..(range.start + first + n) * per_image[k];
                let input = |k: usize| &cache.inputs[k][at(k)];
                // The gradient with respect to layer k's input, through conv k.
                let mut through = |k: usize, g: &[f32], gx: &mut [f32]| {
                    let l = self.layers[k];
                    let (w, b) = part_grads[offsets[k]..offsets[k] + l.len()].split_at_mut(l.weights());
                    convs[k].backward(n, input(k), g, gx, w, b, &mut work);
                };
                // Zero where the ReLU that produced layer k's input clipped.
                let mask = |g: &mut [f32], k: usize| g.iter_mut().zip(input(k)).for_each(|(g, &h)| *g = if h > 0.0 { *g } else { 0.0 });
                let go = (range.start + first) * out_len..(range.start + first + n) * out_len;
                engine::gather(&grad_out.as_slice()[go], n, self.layers[last].out_channels, p, &mut g_side);
                through(last, &g_side, &mut g);
                let mut k = last;
                while k > 0 {
                    let h = n * per_image[k];
                    mask(&mut g[..h], k);
                    if self.blocks > 0 && k > 1 {
                        // Block (k − 2, k − 1): out = ReLU(h + conv_b(ReLU(conv_a(h)))), h = inputs[k − 2].
                        through(k - 1, &g, &mut g_next);
                        mask(&mut g_next[..n * per_image[k - 1]], k - 1);
                        through(k - 2, &g_next, &mut g_side);
                        g[..h].iter_mut().zip(&g_side[..h]).for_each(|(a, b)| *a += b);
                        k -= 2;
                    } else {
                        through(k - 1, &g, &mut g_next);
                        std::mem::swap(&mut g, &mut g_next);
                        k -= 1;
                    }
                }
                let gi = first * per_image[0]..(first + n) * per_image[0];
                engine::scatter(&g, n, self.layers[0].in_channels, p, &mut regions[0][gi], false);
            }
            *partial[part].lock().unwrap_or_else(|e| e.into_inner()) = part_grads;
        });
        grads.fill(0.0);
        for slot in partial {
            let part_grads = slot.into_inner().unwrap_or_else(|e| e.into_inner());
            for (k, conv) in convs.iter().enumerate() {
                let (start, l) = (offsets[k], self.layers[k]);
                conv.add_weight_grad(&part_grads[start..start + l.weights()], &mut grads[start..start + l.weights()]);
                let biases = start + l.weights()..start + l.len();
                grads[biases.clone()].iter_mut().zip(&part_grads[biases]).for_each(|(a, b)| *a += b);
            }
            pool::give(part_grads);
        }
        drop(convs);
        if self.context_dim == 0 {
            return Matrix::from_vec(cache.rows, self.image.len(), g_in);
        }
        // Each context value's gradient is the sum over its plane.
        let (len, p) = (self.image.len(), self.image.pixels());
        let width = len + self.context_dim * p;
        let mut out = Matrix::zeros(cache.rows, len + self.context_dim);
        for r in 0..cache.rows {
            let (src, dst) = (&g_in[r * width..(r + 1) * width], out.row_mut(r));
            dst[..len].copy_from_slice(&src[..len]);
            for (c, plane) in src[len..].chunks(p).enumerate() {
                dst[len + c] = fastmath::sum(plane);
            }
        }
        pool::give(g_in);
        out
    }

    /// The flat parameters.
    pub fn params(&self) -> &[f32] {
        &self.params
    }

    /// The flat parameters, mutable.
    pub fn params_mut(&mut self) -> &mut [f32] {
        &mut self.params
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Outputs, input gradients and parameter gradients of a batch whose images span several
    /// groups and workers equal those of the images one at a time (one group each).
    #[test]
    fn a_batch_split_into_groups_and_workers_matches_image_by_image() {
        // 24×24 images: two per group, so seven images make several groups per worker.
        let image = ImageShape { channels: 2, height: 24, width: 24 };
        for (blocks, context) in [(0, 0), (1, 2)] {
            let mut rng = Rng::new(5);
            let mut net = ConvNet::residual(image, context, 6, blocks, 4, &mut rng);
            net.params_mut().iter_mut().for_each(|v| *v = rng.normal() as f32 * 0.3);
            let width = image.len() + context;
            let x = Matrix::from_vec(7, width, (0..7 * width).map(|_| rng.normal() as f32).collect());
            let g = Matrix::from_vec(7, 4 * image.pixels(), (0..7 * 4 * image.pixels()).map(|_| rng.normal() as f32).collect());
            let (out, cache) = net.forward_cached(&x);
            let mut grads = vec![0.0; net.params().len()];
            let g_in = net.backward(&cache, g.clone(), &mut grads);
            let mut summed = vec![0.0f64; grads.len()];
            for r in 0..7 {
                let one = Matrix::from_vec(1, width, x.row(r).to_vec());
                let (o, c) = net.forward_cached(&one);
                let close = |a: &[f32], b: &[f32]| a.iter().zip(b).all(|(a, b)| (a - b).abs() <= 1e-4 * (1.0 + b.abs()));
                assert!(close(out.row(r), o.row(0)), "blocks {blocks}: output of image {r}");
                let mut gr = vec![0.0; grads.len()];
                let gi = net.backward(&c, Matrix::from_vec(1, g.cols(), g.row(r).to_vec()), &mut gr);
                assert!(close(g_in.row(r), gi.row(0)), "blocks {blocks}: input gradient of image {r}");
                summed.iter_mut().zip(&gr).for_each(|(s, v)| *s += *v as f64);
            }
            for (i, (a, b)) in grads.iter().zip(&summed).enumerate() {
                assert!((*a as f64 - b).abs() <= 1e-3 * (1.0 + b.abs()), "blocks {blocks}: parameter {i}: {a} vs {b}");
            }
        }
    }
}
