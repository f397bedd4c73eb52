//! RealNVP's checkerboard-masked conditioner (Dinh et al. 2017, arXiv:1605.08803, §3.4): the
//! pixels of one colour of a checkerboard condition those of the other. The pass-through values
//! arrive as a compact row (the coupling's first half, in [`checkerboard_order`]); the network
//! puts them back in place with zeros on the other colour, runs a [`ConvNet`] over the whole
//! image, and reads the transformer's parameters at the other colour's pixels.

use super::{ConvNet, ConvNetCache};
use crate::engine::{ImageShape, Matrix, Rng};

/// The positions (indices into a `C×H×W` row) of the checkerboard colour `parity` (pixels with
/// `(y + x) % 2 == parity`, every channel) and of the other colour, each in row order.
pub fn checkerboard_order(image: ImageShape, parity: usize) -> (Vec<usize>, Vec<usize>) {
    (0..image.len()).partition(|&i| {
        let p = i % image.pixels();
        (p / image.width + p % image.width) % 2 == parity % 2
    })
}

/// A conditioner from the values at one checkerboard colour to `params_per_dim` transformer
/// parameters for each value at the other colour (parameter-major, as the transformer reads
/// them).
#[derive(Clone, Debug)]
pub struct CheckerboardNet {
    image: ImageShape,
    kept: Vec<usize>,
    other: Vec<usize>,
    params_per_dim: usize,
    context_dim: usize,
    net: ConvNet,
}

impl CheckerboardNet {
    /// A network of `hidden` channels on images of `image` shape whose colour `parity` passes
    /// through, with `context_dim` context values after the pass-through values of each row and
    /// `blocks` residual blocks (see [`ConvNet::residual`]); its last convolution starts at
    /// zero, so the coupling starts as the identity.
    pub fn new(
        image: ImageShape,
        parity: usize,
        context_dim: usize,
        hidden: usize,
        blocks: usize,
        params_per_dim: usize,
        rng: &mut Rng,
    ) -> Self {
        let (kept, other) = checkerboard_order(image, parity);
        let net = ConvNet::residual(image, context_dim, hidden, blocks, params_per_dim * image.channels, rng);
        Self { image, kept, other, params_per_dim, context_dim, net }
    }

    /// Values passing through per row.
    pub fn kept_len(&self) -> usize {
        self.kept.len()
    }

    /// The pass-through values put back in place, zero on the other colour, then the context.
    fn masked_image(&self, a: &Matrix) -> Matrix {
        let (len, n) = (self.image.len(), self.kept.len());
        let mut full = Matrix::zeros(a.rows(), len + self.context_dim);
        for r in 0..a.rows() {
            let (src, dst) = (a.row(r), full.row_mut(r));
            for (&i, &v) in self.kept.iter().zip(src) {
                dst[i] = v;
            }
            dst[len..].copy_from_slice(&src[n..n + self.context_dim]);
        }
        full
    }

    /// The network's output at the other colour's pixels, parameter-major.
    fn gather(&self, out: &Matrix) -> Matrix {
        let (d, n) = (self.image.len(), self.other.len());
        let mut theta = Matrix::zeros(out.rows(), self.params_per_dim * n);
        for r in 0..out.rows() {
            let (src, dst) = (out.row(r), theta.row_mut(r));
            for k in 0..self.params_per_dim {
                for (j, &i) in self.other.iter().enumerate() {
                    dst[k * n + j] = src[k * d + i];
                }
            }
        }
        theta
    }

    /// Transformer parameters for a batch of pass-through rows.
    pub fn forward(&self, a: &Matrix) -> Matrix {
        self.gather(&self.net.forward(&self.masked_image(a)))
    }

    /// Output and backward cache.
    pub fn forward_cached(&self, a: &Matrix) -> (Matrix, ConvNetCache) {
        let (out, cache) = self.net.forward_cached(&self.masked_image(a));
        (self.gather(&out), cache)
    }

    /// Writes the parameter gradients into `grads` and returns the gradient with respect to
    /// the pass-through values (then the context values).
    pub fn backward(&self, cache: &ConvNetCache, grad_theta: Matrix, grads: &mut [f32]) -> Matrix {
        let (d, n) = (self.image.len(), self.other.len());
        let rows = grad_theta.rows();
        let mut grad_out = Matrix::zeros(rows, self.params_per_dim * d);
        for r in 0..rows {
            let (src, dst) = (grad_theta.row(r), grad_out.row_mut(r));
            for k in 0..self.params_per_dim {
                for (j, &i) in self.other.iter().enumerate() {
                    dst[k * d + i] = src[k * n + j];
                }
            }
        }
        let g_full = self.net.backward(cache, grad_out, grads);
        let (n, len) = (self.kept.len(), self.image.len());
        let mut g_a = Matrix::zeros(rows, n + self.context_dim);
        for r in 0..rows {
            let (src, dst) = (g_full.row(r), g_a.row_mut(r));
            for (o, &i) in dst[..n].iter_mut().zip(&self.kept) {
                *o = src[i];
            }
            dst[n..].copy_from_slice(&src[len..]);
        }
        g_a
    }

    /// The flat parameters.
    pub fn params(&self) -> &[f32] {
        self.net.params()
    }

    /// The flat parameters, mutable.
    pub fn params_mut(&mut self) -> &mut [f32] {
        self.net.params_mut()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_two_colours_split_every_channel_like_a_checkerboard() {
        let image = ImageShape { channels: 2, height: 3, width: 3 };
        let (kept, other) = checkerboard_order(image, 0);
        assert_eq!(kept, vec![0, 2, 4, 6, 8, 9, 11, 13, 15, 17]);
        assert_eq!(other, vec![1, 3, 5, 7, 10, 12, 14, 16]);
        let (kept1, other1) = checkerboard_order(image, 1);
        assert_eq!((kept1, other1), (other, kept));
    }
}
