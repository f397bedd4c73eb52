//! Glow's squeeze (Dinh et al. 2017, arXiv:1605.08803, §3.6): each 2×2 block of pixels becomes
//! four channels, trading resolution for channels between the levels of a multiscale flow.

use super::{BijectionSpec, Direction, Permutation, Tape};
use crate::engine::{ImageShape, Matrix};
use crate::{Bijection, Error, Result};

/// Space-to-depth on image rows. In the density direction (inverse) a `C×H×W` image becomes
/// `4C×(H/2)×(W/2)`: channel `4c + 2·dy + dx` holds the pixels at offset `(dy, dx)` of each 2×2
/// block of channel `c`; the forward direction puts them back. A fixed reordering of each row,
/// so its log-det is 0.
#[derive(Clone, Debug)]
pub struct Squeeze {
    shape: ImageShape,
    order: Permutation,
}

impl Squeeze {
    /// The squeeze of images of `shape` (the data-side, full-resolution shape).
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for an empty shape or an odd height or width.
    pub fn new(shape: ImageShape) -> Result<Self> {
        if shape.is_empty() || shape.height % 2 == 1 || shape.width % 2 == 1 {
            return Err(Error::config(format!("a squeeze needs non-empty images of even height and width, got {shape:?}")));
        }
        let (h, w, half_h, half_w) = (shape.height, shape.width, shape.height / 2, shape.width / 2);
        // Forward: x_j = z_{perm[j]}, x full resolution, z squeezed.
        let mut perm = vec![0; shape.len()];
        for c in 0..shape.channels {
            for yy in 0..h {
                for xx in 0..w {
                    let (y, dy, x, dx) = (yy / 2, yy % 2, xx / 2, xx % 2);
                    perm[(c * h + yy) * w + xx] = ((c * 4 + dy * 2 + dx) * half_h + y) * half_w + x;
                }
            }
        }
        Ok(Self { shape, order: Permutation::new(perm)? })
    }

    /// The full-resolution image shape (data side).
    pub fn shape(&self) -> ImageShape {
        self.shape
    }
}

impl Bijection for Squeeze {
    fn dim(&self) -> usize {
        self.shape.len()
    }

    fn transform(&self, input: &Matrix, context: Option<&Matrix>, direction: Direction) -> Result<(Matrix, Vec<f32>)> {
        self.order.transform(input, context, direction)
    }

    fn backward(&self, direction: Direction, tape: &mut Tape, grad_out: Matrix, grad_log_det: &[f32], grads: &mut [f32]) -> Result<Matrix> {
        self.order.backward(direction, tape, grad_out, grad_log_det, grads)
    }

    fn spec(&self) -> BijectionSpec {
        BijectionSpec::Squeeze { shape: self.shape }
    }
}
