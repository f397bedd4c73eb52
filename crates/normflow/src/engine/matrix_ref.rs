//! A borrowed row-major `f32` matrix: rows that live in someone else's buffer (a numpy array, a
//! memory-mapped file), read in place by the flows' evaluation passes.

use super::{pool, Matrix};

/// A read-only, row-major `rows × cols` view of `f32` values owned elsewhere.
///
/// [`crate::Flow::log_prob_view`], [`crate::Flow::encode_view`] and
/// [`crate::Flow::decode_view`] read such rows in place: each thread copies only the block of
/// at most 512 rows it is working on into its own recycled buffer, so scoring a large array
/// needs no second copy of it.
///
/// # Example
/// ```
/// use normflow::{flows::RealNvpConfig, MatrixRef, Rng};
/// let flow = RealNvpConfig::new(2).init(&mut Rng::new(0)).unwrap();
/// let rows = vec![0.5f32, -1.0, 0.25, 2.0]; // two rows of two values, owned by the caller
/// let log_p = flow.log_prob_view(MatrixRef::new(&rows, 2, 2), None).unwrap();
/// assert_eq!(log_p.len(), 2);
/// ```
#[derive(Clone, Copy, Debug)]
pub struct MatrixRef<'a> {
    rows: usize,
    cols: usize,
    data: &'a [f32],
}

impl<'a> MatrixRef<'a> {
    /// Views `data` as `rows × cols`, row-major.
    ///
    /// # Panics
    /// If `data.len() != rows * cols` (a programming error, not a data error).
    pub fn new(data: &'a [f32], rows: usize, cols: usize) -> Self {
        assert_eq!(data.len(), rows * cols, "MatrixRef::new: buffer length does not match shape");
        Self { rows, cols, data }
    }

    /// Number of rows.
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Number of columns.
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// The row-major values.
    pub fn as_slice(&self) -> &'a [f32] {
        self.data
    }

    /// Rows `start..end` copied into a matrix (a recycled buffer).
    pub fn slice_rows(&self, start: usize, end: usize) -> Matrix {
        Matrix::from_vec(end - start, self.cols, pool::copied(&self.data[start * self.cols..end * self.cols]))
    }

    /// All rows copied into a matrix.
    pub fn to_matrix(&self) -> Matrix {
        self.slice_rows(0, self.rows)
    }

    /// Position `(row, col)` of the first NaN or infinite element, if any.
    pub fn first_non_finite(&self) -> Option<(usize, usize)> {
        self.first_where(|v| !v.is_finite())
    }

    /// `(row, column)` (0-based) of the first value whose magnitude exceeds `limit`, if any.
    pub fn first_beyond(&self, limit: f32) -> Option<(usize, usize)> {
        self.first_where(|v| v.abs() > limit)
    }

    fn first_where(&self, test: impl Fn(f32) -> bool) -> Option<(usize, usize)> {
        self.data.iter().position(|&v| test(v)).map(|p| (p / self.cols.max(1), p % self.cols.max(1)))
    }
}

impl<'a> From<&'a Matrix> for MatrixRef<'a> {
    fn from(m: &'a Matrix) -> Self {
        m.view()
    }
}
