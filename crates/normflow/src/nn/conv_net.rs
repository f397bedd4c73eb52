//! Glow's coupling network on image rows (Kingma & Dhariwal 2018, arXiv:1807.03039, §3.3):
//! 3×3 convolution → ReLU → 1×1 convolution → ReLU → 3×3 convolution, the last one starting at
//! zero so that a new coupling is the identity. Hand-derived backward pass through the engine's
//! convolution kernels.

use crate::engine::{conv2d_backward, conv2d_forward, pool, Conv2dShape, ImageShape, Matrix, Rng};

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
/// same height and width, through two hidden layers of `hidden` channels.
#[derive(Clone, Debug)]
pub struct ConvNet {
    image: ImageShape,
    /// Context values appended to each input row, each broadcast as one constant input plane.
    context_dim: usize,
    layers: [Layer; 3],
    params: Vec<f32>,
}

/// What [`ConvNet::backward`] needs from a forward pass: each layer's input.
#[derive(Debug)]
pub struct ConvNetCache {
    inputs: [Vec<f32>; 3],
    rows: usize,
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
        let layers = [
            Layer { in_channels: input.channels + context_dim, out_channels: hidden, kernel: 3 },
            Layer { in_channels: hidden, out_channels: hidden, kernel: 1 },
            Layer { in_channels: hidden, out_channels, kernel: 3 },
        ];
        let mut params = Vec::with_capacity(layers.iter().map(Layer::len).sum());
        for (k, l) in layers.iter().enumerate() {
            let std = (1.0 / (l.in_channels * l.kernel * l.kernel) as f64).sqrt();
            params.extend((0..l.weights()).map(|_| if k < 2 { (std * rng.normal()) as f32 } else { 0.0 }));
            params.extend(std::iter::repeat_n(0.0, l.out_channels));
        }
        Self { image: input, context_dim, layers, params }
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

    /// `(weights, biases)` of layer `k`.
    fn layer_params(&self, k: usize) -> (&[f32], &[f32]) {
        let start: usize = self.layers[..k].iter().map(Layer::len).sum();
        let l = self.layers[k];
        (&self.params[start..start + l.weights()], &self.params[start + l.weights()..start + l.len()])
    }

    /// The output for a batch and, when `keep`, each layer's input (moved into the cache, not
    /// copied).
    fn run(&self, x: &Matrix, keep: bool) -> (Matrix, Vec<Vec<f32>>) {
        let rows = x.rows();
        let mut inputs = Vec::with_capacity(if keep { 3 } else { 0 });
        let mut h = self.input_planes(x);
        for (k, l) in self.layers.iter().enumerate() {
            let (w, b) = self.layer_params(k);
            let mut out = pool::scratch(rows * l.out_channels * self.image.pixels());
            conv2d_forward(l.shape(rows, self.image), &h, w, b, &mut out);
            if k < 2 {
                out.iter_mut().for_each(|v| *v = v.max(0.0));
            }
            if keep {
                inputs.push(h);
            } else {
                pool::give(h);
            }
            h = out;
        }
        (Matrix::from_vec(rows, self.layers[2].out_channels * self.image.pixels(), h), inputs)
    }

    /// Output for a batch of image rows.
    pub fn forward(&self, x: &Matrix) -> Matrix {
        self.run(x, false).0
    }

    /// Output and backward cache.
    pub fn forward_cached(&self, x: &Matrix) -> (Matrix, ConvNetCache) {
        let (out, inputs) = self.run(x, true);
        let [a, b, c]: [Vec<f32>; 3] = inputs.try_into().expect("three layers");
        (out, ConvNetCache { inputs: [a, b, c], rows: x.rows() })
    }

    /// Writes the parameter gradients into `grads` (overwritten) and returns the input gradient.
    pub fn backward(&self, cache: &ConvNetCache, grad_out: Matrix, grads: &mut [f32]) -> Matrix {
        let mut g = grad_out.into_vec();
        for k in (0..3).rev() {
            let l = self.layers[k];
            let (w, _) = self.layer_params(k);
            let (g_in, g_w, g_b) = conv2d_backward(l.shape(cache.rows, self.image), &cache.inputs[k], w, &g);
            let start: usize = self.layers[..k].iter().map(Layer::len).sum();
            grads[start..start + l.weights()].copy_from_slice(&g_w);
            grads[start + l.weights()..start + l.len()].copy_from_slice(&g_b);
            pool::give(std::mem::replace(&mut g, g_in));
            if k > 0 {
                // Through the ReLU that produced this layer's input: zero where it was clipped.
                g.iter_mut().zip(&cache.inputs[k]).for_each(|(g, &h)| {
                    if h <= 0.0 {
                        *g = 0.0;
                    }
                });
            }
        }
        if self.context_dim == 0 {
            return Matrix::from_vec(cache.rows, self.image.len(), g);
        }
        // Each context value's gradient is the sum over its plane.
        let (len, p) = (self.image.len(), self.image.pixels());
        let width = len + self.context_dim * p;
        let mut out = Matrix::zeros(cache.rows, len + self.context_dim);
        for r in 0..cache.rows {
            let (src, dst) = (&g[r * width..(r + 1) * width], out.row_mut(r));
            dst[..len].copy_from_slice(&src[..len]);
            for (c, plane) in src[len..].chunks(p).enumerate() {
                dst[len + c] = plane.iter().sum();
            }
        }
        pool::give(g);
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
