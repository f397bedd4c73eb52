//! The convolutional coupling networks on image rows, with a hand-derived backward pass through
//! the engine's convolution kernels. Glow's (Kingma & Dhariwal 2018, arXiv:1807.03039, §3.3):
//! 3×3 convolution → ReLU → 1×1 convolution → ReLU → 3×3 convolution. RealNVP's residual network
//! (Dinh et al. 2017, arXiv:1605.08803, §3.6): a 3×3 convolution → ReLU, then residual blocks
//! `h ← ReLU(h + conv3×3(ReLU(conv3×3(h))))`, then the output 3×3 convolution. Either way the
//! last convolution starts at zero, so that a new coupling is the identity.

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

/// What [`ConvNet::backward`] needs from a forward pass: each convolution's input.
#[derive(Debug)]
pub struct ConvNetCache {
    inputs: Vec<Vec<f32>>,
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

    /// Convolution `k` of `input` over `rows` images.
    fn conv(&self, k: usize, rows: usize, input: &[f32]) -> Vec<f32> {
        let l = self.layers[k];
        let (w, b) = self.layer_params(k);
        let mut out = pool::scratch(rows * l.out_channels * self.image.pixels());
        conv2d_forward(l.shape(rows, self.image), input, w, b, &mut out);
        out
    }

    /// The output for a batch and, when `keep`, each convolution's input (moved into the
    /// cache, not copied).
    fn run(&self, x: &Matrix, keep: bool) -> (Matrix, Vec<Vec<f32>>) {
        let rows = x.rows();
        let last = self.layers.len() - 1;
        let mut inputs: Vec<Vec<f32>> = Vec::with_capacity(self.layers.len());
        let relu = |v: &mut Vec<f32>| v.iter_mut().for_each(|v| *v = v.max(0.0));
        let mut h = self.input_planes(x);
        let mut k = 0;
        while k < last {
            if self.blocks > 0 && k > 0 {
                // A residual block: h ← ReLU(h + conv_b(ReLU(conv_a(h)))).
                let mut u = self.conv(k, rows, &h);
                relu(&mut u);
                let mut v = self.conv(k + 1, rows, &u);
                v.iter_mut().zip(&h).for_each(|(v, h)| *v = (*v + h).max(0.0));
                inputs.push(h);
                inputs.push(u);
                h = v;
                k += 2;
            } else {
                let mut out = self.conv(k, rows, &h);
                relu(&mut out);
                inputs.push(h);
                h = out;
                k += 1;
            }
        }
        let out = self.conv(last, rows, &h);
        inputs.push(h);
        if !keep {
            inputs.into_iter().for_each(pool::give);
            inputs = Vec::new();
        }
        (Matrix::from_vec(rows, self.layers[last].out_channels * self.image.pixels(), out), inputs)
    }

    /// Output for a batch of image rows.
    pub fn forward(&self, x: &Matrix) -> Matrix {
        self.run(x, false).0
    }

    /// Output and backward cache.
    pub fn forward_cached(&self, x: &Matrix) -> (Matrix, ConvNetCache) {
        let (out, inputs) = self.run(x, true);
        (out, ConvNetCache { inputs, rows: x.rows() })
    }

    /// The gradient with respect to convolution `k`'s input, given that of its output; writes
    /// the layer's parameter gradients into `grads`.
    fn conv_backward(&self, k: usize, cache: &ConvNetCache, g: &[f32], grads: &mut [f32]) -> Vec<f32> {
        let l = self.layers[k];
        let (w, _) = self.layer_params(k);
        let (g_in, g_w, g_b) = conv2d_backward(l.shape(cache.rows, self.image), &cache.inputs[k], w, g);
        let start = self.offset(k);
        grads[start..start + l.weights()].copy_from_slice(&g_w);
        grads[start + l.weights()..start + l.len()].copy_from_slice(&g_b);
        g_in
    }

    /// Writes the parameter gradients into `grads` (overwritten) and returns the input gradient.
    pub fn backward(&self, cache: &ConvNetCache, grad_out: Matrix, grads: &mut [f32]) -> Matrix {
        // Zero where the ReLU that produced `h` clipped.
        let through_relu = |g: &mut [f32], h: &[f32]| {
            g.iter_mut().zip(h).for_each(|(g, &h)| {
                if h <= 0.0 {
                    *g = 0.0;
                }
            })
        };
        let last = self.layers.len() - 1;
        let mut g = self.conv_backward(last, cache, grad_out.as_slice(), grads);
        let mut k = last;
        while k > 0 {
            // `g` is the gradient with respect to the input of layer k, a ReLU output.
            through_relu(&mut g, &cache.inputs[k]);
            if self.blocks > 0 && k > 1 {
                // Block (k − 2, k − 1): out = ReLU(h + conv_b(ReLU(conv_a(h)))), h = inputs[k − 2].
                let mut g_u = self.conv_backward(k - 1, cache, &g, grads);
                through_relu(&mut g_u, &cache.inputs[k - 1]);
                let g_h = self.conv_backward(k - 2, cache, &g_u, grads);
                pool::give(g_u);
                g.iter_mut().zip(&g_h).for_each(|(a, b)| *a += b);
                pool::give(g_h);
                k -= 2;
            } else {
                let g_in = self.conv_backward(k - 1, cache, &g, grads);
                pool::give(std::mem::replace(&mut g, g_in));
                k -= 1;
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
