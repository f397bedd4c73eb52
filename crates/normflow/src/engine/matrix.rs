//! A dense row-major `f32` matrix: the one tensor type of the engine.

use super::{pool, MatrixRef};

/// A dense, row-major `rows × cols` matrix of `f32`.
///
/// Batches of data are matrices with one row per sample and one column per dimension.
///
/// Buffers are recycled: a dropped matrix returns its buffer to a per-thread store that new
/// matrices of the same size draw from, so repeated passes (training steps) do not allocate.
#[derive(Debug, PartialEq, Default)]
pub struct Matrix {
    rows: usize,
    cols: usize,
    data: Vec<f32>,
}

impl Matrix {
    /// A `rows × cols` matrix of zeros.
    pub fn zeros(rows: usize, cols: usize) -> Self {
        Self { rows, cols, data: pool::zeroed(rows * cols) }
    }

    /// A `rows × cols` matrix whose values are unspecified (a recycled buffer's): for outputs
    /// that are about to be written in full, so that no pass is spent clearing them.
    pub(crate) fn scratch(rows: usize, cols: usize) -> Self {
        Self { rows, cols, data: pool::scratch(rows * cols) }
    }

    /// A `rows × cols` matrix with every element `value`.
    pub fn filled(rows: usize, cols: usize, value: f32) -> Self {
        Self { rows, cols, data: pool::filled(rows * cols, value) }
    }

    /// Wraps a row-major buffer.
    ///
    /// # Panics
    /// If `data.len() != rows * cols` (a programming error, not a data error).
    pub fn from_vec(rows: usize, cols: usize, data: Vec<f32>) -> Self {
        assert_eq!(data.len(), rows * cols, "Matrix::from_vec: buffer length does not match shape");
        Self { rows, cols, data }
    }

    /// Builds a matrix from equal-length rows. Returns `None` if the rows differ in length.
    pub fn from_rows(rows: &[Vec<f32>]) -> Option<Self> {
        let cols = rows.first().map_or(0, Vec::len);
        if rows.iter().any(|r| r.len() != cols) {
            return None;
        }
        Some(Self { rows: rows.len(), cols, data: rows.concat() })
    }

    /// Number of rows (samples).
    pub fn rows(&self) -> usize {
        self.rows
    }

    /// Number of columns (dimensions).
    pub fn cols(&self) -> usize {
        self.cols
    }

    /// The row-major buffer.
    pub fn as_slice(&self) -> &[f32] {
        &self.data
    }

    /// The mutable row-major buffer.
    pub fn as_mut_slice(&mut self) -> &mut [f32] {
        &mut self.data
    }

    /// Consumes the matrix and returns its buffer.
    pub fn into_vec(mut self) -> Vec<f32> {
        std::mem::take(&mut self.data)
    }

    /// Row `i` as a slice.
    pub fn row(&self, i: usize) -> &[f32] {
        &self.data[i * self.cols..(i + 1) * self.cols]
    }

    /// Row `i` as a mutable slice.
    pub fn row_mut(&mut self, i: usize) -> &mut [f32] {
        let c = self.cols;
        &mut self.data[i * c..(i + 1) * c]
    }

    /// Element `(i, j)`.
    pub fn get(&self, i: usize, j: usize) -> f32 {
        self.data[i * self.cols + j]
    }

    /// Sets element `(i, j)`.
    pub fn set(&mut self, i: usize, j: usize, v: f32) {
        self.data[i * self.cols + j] = v;
    }

    /// Rows `start..end` as a new matrix.
    pub fn slice_rows(&self, start: usize, end: usize) -> Matrix {
        self.view().slice_rows(start, end)
    }

    /// Each row `k` times in a row: rows `i·k .. (i+1)·k` of the result are row `i` (e.g. one
    /// context row for each of `k` samples).
    pub fn repeat_rows(&self, k: usize) -> Matrix {
        let idx: Vec<usize> = (0..self.rows).flat_map(|i| std::iter::repeat_n(i, k)).collect();
        self.select_rows(&idx)
    }

    /// The rows with the given indices, in that order.
    pub fn select_rows(&self, idx: &[usize]) -> Matrix {
        let mut out = pool::with_capacity(idx.len() * self.cols);
        for &i in idx {
            out.extend_from_slice(self.row(i));
        }
        Matrix::from_vec(idx.len(), self.cols, out)
    }

    /// Columns `start..end` as a new matrix.
    pub fn slice_cols(&self, start: usize, end: usize) -> Matrix {
        let mut out = pool::with_capacity(self.rows * (end - start));
        for i in 0..self.rows {
            out.extend_from_slice(&self.row(i)[start..end]);
        }
        Matrix::from_vec(self.rows, end - start, out)
    }

    /// The columns with the given indices, in that order.
    pub fn select_cols(&self, idx: &[usize]) -> Matrix {
        let mut out = pool::with_capacity(self.rows * idx.len());
        for i in 0..self.rows {
            let r = self.row(i);
            out.extend(idx.iter().map(|&j| r[j]));
        }
        Matrix::from_vec(self.rows, idx.len(), out)
    }

    /// `[self | other]`: the columns of `other` appended to those of `self`.
    ///
    /// # Panics
    /// If the row counts differ.
    pub fn hcat(&self, other: &Matrix) -> Matrix {
        assert_eq!(self.rows, other.rows, "hcat: row counts differ");
        let cols = self.cols + other.cols;
        let mut out = pool::with_capacity(self.rows * cols);
        for i in 0..self.rows {
            out.extend_from_slice(self.row(i));
            out.extend_from_slice(other.row(i));
        }
        Matrix::from_vec(self.rows, cols, out)
    }

    /// The rows of `other` appended below those of `self`.
    ///
    /// # Panics
    /// If the column counts differ.
    pub fn vcat(&self, other: &Matrix) -> Matrix {
        assert_eq!(self.cols, other.cols, "vcat: column counts differ");
        let mut data = pool::with_capacity(self.data.len() + other.data.len());
        data.extend_from_slice(&self.data);
        data.extend_from_slice(&other.data);
        Matrix::from_vec(self.rows + other.rows, self.cols, data)
    }

    /// Position `(row, col)` of the first NaN or infinite element, if any.
    pub fn first_non_finite(&self) -> Option<(usize, usize)> {
        self.view().first_non_finite()
    }

    /// `(row, column)` (0-based) of the first value whose magnitude exceeds `limit`, if any.
    pub fn first_beyond(&self, limit: f32) -> Option<(usize, usize)> {
        self.view().first_beyond(limit)
    }

    /// The matrix as a borrowed view.
    pub fn view(&self) -> MatrixRef<'_> {
        MatrixRef::new(&self.data, self.rows, self.cols)
    }
}

impl Clone for Matrix {
    fn clone(&self) -> Self {
        Self { rows: self.rows, cols: self.cols, data: pool::copied(&self.data) }
    }
}

impl Drop for Matrix {
    fn drop(&mut self) {
        pool::give(std::mem::take(&mut self.data));
    }
}
