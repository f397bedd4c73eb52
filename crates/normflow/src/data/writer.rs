//! Writing a table block by block, in bounded memory, as CSV or NPY.

use std::io::Write;

use super::csv::write_csv;
use super::npy::{write_npy_header, write_npy_rows};
use super::Format;
use crate::engine::Matrix;

/// A table written in blocks of rows: CSV (with its header before the first block), NPY
/// (whose header, written at once, needs the total row count), or — to a file, feature
/// `columnar` — Parquet or Arrow IPC (float32 columns named by the header; [`TableWriter::finish`]
/// writes their footer). Every value must be finite: a NaN or infinite value is refused with
/// its row and column in the whole table, so that no file is written that the readers would
/// reject.
pub struct TableWriter<'a> {
    sink: Sink<'a>,
    rows_written: usize,
}

enum Sink<'a> {
    Text {
        out: &'a mut dyn Write,
        format: Format,
        header: Option<Vec<String>>,
    },
    #[cfg(feature = "columnar")]
    Columnar(Box<super::ColumnarWriter<'a>>),
}

impl<'a> TableWriter<'a> {
    /// Starts a CSV or NPY table of `rows × cols` values on `out` (the NPY header is written
    /// now).
    ///
    /// # Errors
    /// Any I/O error of `out`; [`std::io::ErrorKind::InvalidInput`] for a columnar format
    /// (those go to a file: [`TableWriter::to_file`]).
    pub fn new(out: &'a mut dyn Write, format: Format, rows: usize, cols: usize, header: Option<&[String]>) -> std::io::Result<Self> {
        match format {
            Format::Csv => {}
            Format::Npy => write_npy_header(out, rows, cols)?,
            Format::Parquet | Format::Arrow => {
                return Err(std::io::Error::new(std::io::ErrorKind::InvalidInput, "Parquet and Arrow tables are written to files only"))
            }
        }
        Ok(Self { sink: Sink::Text { out, format, header: header.map(<[String]>::to_vec) }, rows_written: 0 })
    }

    /// Starts a table of any format on a file's writer (`rows` is needed by NPY only; a
    /// columnar table without `header` names its columns `x1 … xd`).
    ///
    /// # Errors
    /// Any I/O error of `out`; [`std::io::ErrorKind::Unsupported`] for a columnar format in a
    /// build without the `columnar` feature.
    pub fn to_file(
        out: &'a mut (dyn Write + Send),
        format: Format,
        rows: usize,
        cols: usize,
        header: Option<&[String]>,
    ) -> std::io::Result<Self> {
        if !format.is_columnar() {
            return Self::new(out, format, rows, cols, header);
        }
        #[cfg(feature = "columnar")]
        {
            let names: Vec<String> = header.map_or_else(|| (1..=cols).map(|k| format!("x{k}")).collect(), <[String]>::to_vec);
            Ok(Self { sink: Sink::Columnar(Box::new(super::ColumnarWriter::new(out, format, &names)?)), rows_written: 0 })
        }
        #[cfg(not(feature = "columnar"))]
        {
            let _ = (out, rows, cols, header);
            Err(std::io::Error::new(std::io::ErrorKind::Unsupported, "this build writes no Parquet or Arrow files (feature `columnar`)"))
        }
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
        match &mut self.sink {
            Sink::Text { out, format: Format::Npy, .. } => write_npy_rows(*out, block)?,
            Sink::Text { out, header, .. } => write_csv(*out, block, header.take().as_deref())?,
            #[cfg(feature = "columnar")]
            Sink::Columnar(w) => w.write(block)?,
        }
        self.rows_written += block.rows();
        Ok(())
    }

    /// Ends the table (a columnar file's footer; nothing for CSV and NPY).
    ///
    /// # Errors
    /// Any I/O error of `out`.
    pub fn finish(self) -> std::io::Result<()> {
        match self.sink {
            Sink::Text { .. } => Ok(()),
            #[cfg(feature = "columnar")]
            Sink::Columnar(w) => w.finish(),
        }
    }
}
