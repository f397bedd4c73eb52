//! Data: CSV and NPY readers and writers (atomic), and seeded 2-D toy generators.

#[cfg(feature = "columnar")]
mod columnar;
mod csv;
mod idx;
mod npy;
pub mod toy;
mod writer;

#[cfg(feature = "columnar")]
pub use columnar::{read_columnar, read_columnar_header, ColumnarChunks, ColumnarWriter};
pub use csv::{read_csv, read_header, write_csv, CsvChunks, CsvOptions};
pub use idx::{read_idx, IdxData};
pub use npy::{read_npy, read_npy_array, write_npy, NpyArray};
pub use writer::TableWriter;

use std::path::Path;

use crate::engine::Matrix;
use crate::{Error, Result};

/// Columns whose values are all integers, not all equal (0-based): counts, levels, flags,
/// pixel intensities, which a continuous density should see dequantised. A constant column is
/// not listed (standardisation refuses it with its own error).
pub fn integer_columns(x: &Matrix) -> Vec<usize> {
    if x.rows() == 0 {
        return Vec::new();
    }
    (0..x.cols())
        .filter(|&j| {
            let first = x.get(0, j);
            (0..x.rows()).all(|i| x.get(i, j).fract() == 0.0) && (0..x.rows()).any(|i| x.get(i, j) != first)
        })
        .collect()
}

/// A table read from a file: the values and, when the file had a header, the column names.
#[derive(Clone, Debug, PartialEq)]
pub struct Table {
    /// One row per record.
    pub data: Matrix,
    /// Column names (from a CSV header), if any.
    pub columns: Option<Vec<String>>,
}

/// File formats, chosen by extension.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Format {
    /// Comma-separated text (`.csv`, `.txt` or anything else).
    Csv,
    /// NumPy `.npy`.
    Npy,
    /// Apache Parquet (`.parquet`, `.pq`): columns by name, read in record batches.
    Parquet,
    /// Apache Arrow IPC file (`.arrow`, `.feather`, `.ipc`).
    Arrow,
}

impl Format {
    /// The format of `path`, by its extension (`.npy` → NPY, `.parquet`/`.pq` → Parquet,
    /// `.arrow`/`.feather`/`.ipc` → Arrow IPC, otherwise CSV).
    pub fn of(path: &Path) -> Format {
        match path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
            Some("npy") => Format::Npy,
            Some("parquet" | "pq") => Format::Parquet,
            Some("arrow" | "feather" | "ipc") => Format::Arrow,
            _ => Format::Csv,
        }
    }

    /// Whether this is a columnar format (Parquet or Arrow IPC).
    pub fn is_columnar(self) -> bool {
        matches!(self, Format::Parquet | Format::Arrow)
    }

    /// The format to write `path` in: `.npy` → NPY; `.csv` or no extension (`/dev/stdout`, a
    /// FIFO) → CSV; any other extension is refused rather than silently written as CSV.
    ///
    /// # Errors
    /// [`Error::BadFile`] naming the path and the extensions it can write.
    pub fn for_output(path: &Path) -> Result<Format> {
        match path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
            Some("npy") => Ok(Format::Npy),
            Some("csv") | None => Ok(Format::Csv),
            Some("parquet" | "pq" | "arrow" | "feather" | "ipc") if cfg!(feature = "columnar") => Ok(Format::of(path)),
            Some(other) => Err(Error::BadFile {
                path: path.into(),
                message: format!(
                    "cannot write '.{other}' files; name the output .csv, .npy{}",
                    if cfg!(feature = "columnar") { ", .parquet or .arrow" } else { "" }
                ),
            }),
        }
    }
}

/// The rows of a CSV file (plain or gzip) or — feature `columnar` — a Parquet or Arrow IPC
/// file, read in chunks in bounded memory, with the columns `CsvOptions` selects.
#[derive(Debug)]
pub enum RowChunks {
    /// A CSV file.
    Csv(CsvChunks),
    /// A Parquet or Arrow IPC file.
    #[cfg(feature = "columnar")]
    Columnar(ColumnarChunks),
}

impl RowChunks {
    /// Opens `path` by its extension.
    ///
    /// # Errors
    /// As [`CsvChunks::open`] and `ColumnarChunks::open`; [`Error::BadFile`] for an NPY file
    /// (read it whole with [`read_table`]) or a columnar file in a build without `columnar`.
    pub fn open(path: &Path, options: &CsvOptions) -> Result<Self> {
        match Format::of(path) {
            Format::Csv => Ok(RowChunks::Csv(CsvChunks::open(path, options)?)),
            #[cfg(feature = "columnar")]
            Format::Parquet | Format::Arrow => Ok(RowChunks::Columnar(ColumnarChunks::open(path, options)?)),
            #[cfg(not(feature = "columnar"))]
            Format::Parquet | Format::Arrow => {
                Err(Error::BadFile { path: path.into(), message: "this build reads no Parquet or Arrow files (feature `columnar`)".into() })
            }
            Format::Npy => Err(Error::BadFile { path: path.into(), message: "an NPY file is read whole, not in chunks".into() }),
        }
    }

    /// Number of selected columns.
    pub fn width(&self) -> usize {
        match self {
            RowChunks::Csv(c) => c.width(),
            #[cfg(feature = "columnar")]
            RowChunks::Columnar(c) => c.width(),
        }
    }

    /// The next chunk of at most `max_rows` rows, or `None` at the end of the file.
    ///
    /// # Errors
    /// A bad cell, naming the file, row and column.
    pub fn next_chunk(&mut self, max_rows: usize) -> Result<Option<Matrix>> {
        match self {
            RowChunks::Csv(c) => c.next_chunk(max_rows),
            #[cfg(feature = "columnar")]
            RowChunks::Columnar(c) => c.next_chunk(max_rows),
        }
    }
}

/// Reads a CSV or NPY file (by extension), selecting columns if asked.
///
/// # Errors
/// [`Error::Io`], [`Error::Parse`] or [`Error::BadFile`] naming the file (and the row and
/// column for a bad cell); an empty file or one with no data rows is an error.
pub fn read_table(path: &Path, options: &CsvOptions) -> Result<Table> {
    match Format::of(path) {
        Format::Csv => read_csv(path, options),
        #[cfg(feature = "columnar")]
        Format::Parquet | Format::Arrow => read_columnar(path, options),
        #[cfg(not(feature = "columnar"))]
        Format::Parquet | Format::Arrow => {
            Err(Error::BadFile { path: path.into(), message: "this build reads no Parquet or Arrow files (feature `columnar`)".into() })
        }
        Format::Npy => {
            let data = read_npy(path)?;
            let data = match &options.columns {
                None => data,
                Some(sel) => {
                    let idx = sel.iter().map(|s| resolve_column(path, s, None, data.cols())).collect::<Result<Vec<_>>>()?;
                    data.select_cols(&idx)
                }
            };
            Ok(Table { data, columns: None })
        }
    }
}

/// Writes `data` as CSV (with `header` if given) or NPY, by extension, atomically.
///
/// # Errors
/// [`Error::Io`] naming the file, also for a NaN or infinite value (with its row and column;
/// the file is then untouched); [`Error::BadFile`] for an extension other than `.csv` and
/// `.npy`.
pub fn write_table(path: &Path, data: &Matrix, header: Option<&[String]>) -> Result<()> {
    let format = Format::for_output(path)?;
    crate::io::write_atomic(path, |w| {
        TableWriter::to_file(w, format, data.rows(), data.cols(), header)
            .and_then(|mut t| t.write(data).and_then(|()| t.finish()))
            .map_err(|e| Error::io(path, e))
    })
}

/// Index of a column given by name (when there is a header) or by 1-based position.
pub(crate) fn resolve_column(path: &Path, sel: &str, header: Option<&[String]>, cols: usize) -> Result<usize> {
    if let Some(h) = header {
        if let Some(i) = h.iter().position(|c| c == sel) {
            return Ok(i);
        }
    }
    match sel.parse::<usize>() {
        Ok(k) if (1..=cols).contains(&k) => Ok(k - 1),
        _ => Err(Error::BadFile {
            path: path.into(),
            message: match header {
                Some(h) => format!("no column '{sel}' (columns: {}; or give a 1-based position up to {cols})", h.join(", ")),
                None => format!("no column '{sel}': the file has no header, so give 1-based positions up to {cols}"),
            },
        }),
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn integer_columns_are_the_varying_whole_number_ones() {
        // Counts, a continuous column, a constant integer column, a flag.
        let x = Matrix::from_vec(3, 4, vec![1.0, 0.5, 7.0, 0.0, 4.0, 1.25, 7.0, 1.0, 2.0, -3.0, 7.0, 0.0]);
        assert_eq!(integer_columns(&x), vec![0, 3]);
        assert!(integer_columns(&Matrix::zeros(0, 3)).is_empty());
    }
}
