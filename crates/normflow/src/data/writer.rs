//! Writing a table block by block, in bounded memory, as CSV or NPY.

use std::io::Write;

use super::csv::write_csv;
use super::npy::{write_npy_header, write_npy_rows};
use super::Format;
use crate::engine::Matrix;

/// A table written in blocks of rows: CSV (with its header before the first block) or NPY
/// (whose header, written at once, needs the total row count). Every value must be finite:
/// a NaN or infinite value is refused with its row and column in the whole table, so that no
/// file is written that the readers would reject.
pub struct TableWriter<'a> {
    out: &'a mut dyn Write,
    format: Format,
    header: Option<Vec<String>>,
    rows_written: usize,
}

impl<'a> TableWriter<'a> {
    /// Starts a table of `rows × cols` values on `out` (the NPY header is written now).
    ///
    /// # Errors
    /// Any I/O error of `out`.
    pub fn new(out: &'a mut dyn Write, format: Format, rows: usize, cols: usize, header: Option<&[String]>) -> std::io::Result<Self> {
        if format == Format::Npy {
            write_npy_header(out, rows, cols)?;
        }
        Ok(Self { out, format, header: header.map(<[String]>::to_vec), rows_written: 0 })
    }

    /// Appends the rows of `block`.
    ///
    /// # Errors
    /// Any I/O error of `out`; [`std::io::ErrorKind::InvalidData`] naming the row (1-based in
    /// the whole table) and column of a NaN or infinite value.
    pub fn write(&mut self, block: &Matrix) -> std::io::Result<()> {
        if let Some((r, c)) = block.first_non_finite() {
            return Err(std::io::Error::new(
                std::io::ErrorKind::InvalidData,
                format!(
                    "result row {}, column {} is {} (the input lies too far outside what the model has seen for f32 arithmetic); nothing written",
                    self.rows_written + r + 1,
                    c + 1,
                    block.get(r, c)
                ),
            ));
        }
        match self.format {
            Format::Csv => write_csv(self.out, block, self.header.take().as_deref())?,
            Format::Npy => write_npy_rows(self.out, block)?,
        }
        self.rows_written += block.rows();
        Ok(())
    }
}
