//! Fixed permutations of the dimensions, placed between coupling or autoregressive layers so
//! that every dimension gets transformed.

use super::{check_width, BijectionSpec, Direction, Tape};
use crate::engine::{pool, Matrix, Rng};
use crate::{Bijection, Error, Result};

/// `x_j = z_{perm[j]}`: a fixed reordering of the columns, with log-det 0.
#[derive(Clone, Debug)]
pub struct Permutation {
    perm: Vec<usize>,
    inverse: Vec<usize>,
}

impl Permutation {
    /// The permutation `perm` (a reordering of `0..perm.len()`).
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] if `perm` is not a permutation.
    pub fn new(perm: Vec<usize>) -> Result<Self> {
        let mut inverse = vec![usize::MAX; perm.len()];
        for (j, &p) in perm.iter().enumerate() {
            if p >= perm.len() || inverse[p] != usize::MAX {
                return Err(Error::config("not a permutation"));
            }
            inverse[p] = j;
        }
        Ok(Self { perm, inverse })
    }

    /// Reverses the order of `dim` columns.
    pub fn reverse(dim: usize) -> Self {
        Self::new((0..dim).rev().collect()).expect("a reversal is a permutation")
    }

    /// The pair of permutations around a checkerboard coupling on `image` rows, in forward
    /// (generative) order: the first puts image rows in the coupling's layout (colour `parity`
    /// first, see [`crate::nn::checkerboard_order`]), the second puts them back.
    pub fn checkerboard(image: crate::engine::ImageShape, parity: usize) -> (Self, Self) {
        let (mut order, other) = crate::nn::checkerboard_order(image, parity);
        order.extend(other);
        let to_coupling = Self::new(order).expect("the two colours cover the image once");
        let to_image = Self::new(to_coupling.inverse.clone()).expect("the inverse of a permutation is one");
        (to_coupling, to_image)
    }

    /// A seeded random permutation of `dim` columns.
    pub fn random(dim: usize, rng: &mut Rng) -> Self {
        Self::new(rng.permutation(dim)).expect("a shuffle is a permutation")
    }

    fn indices(&self, direction: Direction) -> &[usize] {
        match direction {
            Direction::Forward => &self.perm,
            Direction::Inverse => &self.inverse,
        }
    }
}

impl Bijection for Permutation {
    fn dim(&self) -> usize {
        self.perm.len()
    }

    fn transform(&self, input: &Matrix, _context: Option<&Matrix>, direction: Direction) -> Result<(Matrix, Vec<f32>)> {
        check_width("permutation input", input, self.perm.len())?;
        Ok((input.select_cols(self.indices(direction)), pool::zeroed(input.rows())))
    }

    fn backward(
        &self,
        direction: Direction,
        _tape: &mut Tape,
        grad_out: Matrix,
        _grad_log_det: &[f32],
        _grads: &mut [f32],
    ) -> Result<Matrix> {
        // out = in[:, idx] ⇒ grad_in = grad_out[:, idx⁻¹].
        Ok(grad_out.select_cols(self.indices(direction.flip())))
    }

    fn spec(&self) -> BijectionSpec {
        BijectionSpec::Permutation { perm: self.perm.clone() }
    }
}
