//! Monotonic rational-quadratic splines (Durkan et al. 2019, arXiv:1906.04032), the transformer
//! of neural spline flows, with hand-derived gradients.
//!
//! On `[−B, B]` the map is a spline of `K` bins whose widths and heights come from softmaxes of
//! unconstrained parameters (floored at `min_bin`) and whose inner knot derivatives come from a
//! shifted softplus (floored at `min_derivative`); the boundary derivatives are 1, so the map
//! joins the identity tails outside `[−B, B]` smoothly. All-zero parameters give uniform bins
//! and unit derivatives: exactly the identity.
//!
//! Numerical rules (each one cost some library a bug report): inputs outside the bound never
//! enter the spline formulas (they take the identity branch, so no NaN can leak into gradients),
//! the bin search is clamped so the last knot belongs to the last bin, and the inverse uses the
//! stable root `2c / (−b − √disc)` with the discriminant clamped at 0.

/// Shape of a spline transformer.
#[derive(Clone, Copy, Debug, PartialEq, serde::Serialize, serde::Deserialize)]
pub struct SplineShape {
    /// Number of bins `K` (default 8).
    pub bins: usize,
    /// Tail bound `B`: the spline acts on `[−B, B]`, the identity outside (default 5).
    pub bound: f32,
}

impl Default for SplineShape {
    fn default() -> Self {
        Self { bins: 8, bound: 5.0 }
    }
}

/// Smallest bin width and height, as a fraction of the interval.
pub(crate) const MIN_BIN: f32 = 1e-3;
/// Smallest knot derivative.
pub(crate) const MIN_DERIVATIVE: f32 = 1e-3;

/// Fixed part of an element's record (see [`Spline::record_len`]).
pub(crate) const RECORD_HEAD: usize = 10;

impl SplineShape {
    /// Unconstrained parameters per transformed element: `K` widths, `K` heights, `K − 1` inner
    /// derivatives.
    pub fn params_per_dim(&self) -> usize {
        3 * self.bins - 1
    }
}

/// Floats a training pass records per element for its backward pass: whether the element was
/// inside the bound, its bin, the bin's two knots in x and in y, the two knot derivatives and
/// their softplus slopes, and the width and height probabilities.
pub(crate) fn record_len(shape: SplineShape) -> usize {
    RECORD_HEAD + 2 * shape.bins
}
