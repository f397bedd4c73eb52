//! Parquet and Arrow IPC files: numeric columns read in record batches of bounded size, and
//! tables written as float32 columns (feature `columnar`).

use std::fs::File;
use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use arrow_array::cast::AsArray;
use arrow_array::types::{
    Float16Type, Float32Type, Float64Type, Int16Type, Int32Type, Int64Type, Int8Type, UInt16Type, UInt32Type, UInt64Type, UInt8Type,
};
use arrow_array::{Array, ArrayRef, Float32Array, RecordBatch};
use arrow_schema::{DataType, Field, Schema, SchemaRef};
use parquet::arrow::arrow_reader::ParquetRecordBatchReaderBuilder;
use parquet::arrow::{ArrowWriter, ProjectionMask};
use parquet::basic::{Compression, ZstdLevel};
use parquet::file::properties::WriterProperties;

use super::{resolve_column, CsvOptions, Format, Table};
use crate::engine::Matrix;
use crate::{Error, Result};

/// Rows per record batch read from a file (a batch of 64 columns is 16 MiB of f32).
const READ_BATCH: usize = 65_536;

/// Rows per Parquet row group written (the writer holds one group in memory: 4 MiB per column).
const ROW_GROUP_ROWS: usize = 1 << 20;

/// A Parquet or Arrow IPC file's numeric columns read in chunks of rows, in bounded memory:
/// one record batch at a time, only the selected columns decoded. Every numeric Arrow type
/// (integers, float16/32/64) is read as f32; a null cell, a non-numeric column or a non-finite
/// value is an error naming the file, the 1-based row and the column.
pub struct ColumnarChunks {
    path: PathBuf,
    batches: Box<dyn Iterator<Item = std::result::Result<RecordBatch, arrow_schema::ArrowError>> + Send>,
    /// Names of the selected columns, in the order read.
    names: Vec<String>,
    /// Their indices among the batches' columns (all columns for IPC, the projection for Parquet).
    keep: Vec<usize>,
    /// Rows read so far.
    rows: usize,
    /// Rows of the current batch not yet returned.
    pending: Option<(Matrix, usize)>,
}

impl std::fmt::Debug for ColumnarChunks {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "ColumnarChunks({}, row {})", self.path.display(), self.rows)
    }
}

fn bad(path: &Path, message: impl Into<String>) -> Error {
    Error::BadFile { path: path.into(), message: message.into() }
}

/// The indices (into `schema`) of the columns `options` keeps.
fn selection(path: &Path, schema: &Schema, options: &CsvOptions) -> Result<Vec<usize>> {
    let names: Vec<String> = schema.fields().iter().map(|f| f.name().clone()).collect();
    let resolve = |s: &String| resolve_column(path, s, Some(&names), names.len());
    let keep = match &options.columns {
        Some(sel) => sel.iter().map(resolve).collect::<Result<Vec<_>>>()?,
        None => {
            let drop = options.drop.iter().map(resolve).collect::<Result<Vec<_>>>()?;
            (0..names.len()).filter(|i| !drop.contains(i)).collect()
        }
    };
    let twice: Vec<&str> = (0..keep.len()).filter(|&k| keep[..k].contains(&keep[k])).map(|k| names[keep[k]].as_str()).collect();
    if !twice.is_empty() {
        return Err(bad(path, format!("column selected twice: {}", twice.join(", "))));
    }
    for &i in &keep {
        let field = schema.field(i);
        if !is_numeric(field.data_type()) {
            return Err(bad(path, format!("column '{}' is {}, not numeric", field.name(), field.data_type())));
        }
    }
    if keep.is_empty() {
        return Err(bad(path, "no columns selected"));
    }
    Ok(keep)
}

fn is_numeric(t: &DataType) -> bool {
    t.is_integer() || matches!(t, DataType::Float16 | DataType::Float32 | DataType::Float64)
}

impl ColumnarChunks {
    /// Opens a `.parquet` file or an Arrow IPC file (`.arrow`, `.feather`, `.ipc`) and selects
    /// its columns (by name or 1-based position, as for CSV).
    ///
    /// # Errors
    /// [`Error::Io`] if it cannot be opened; [`Error::BadFile`] if it is not such a file, or
    /// for unknown or non-numeric columns.
    pub fn open(path: &Path, options: &CsvOptions) -> Result<Self> {
        let file = File::open(path).map_err(|e| Error::io(path, e))?;
        match Format::of(path) {
            Format::Parquet => {
                let builder =
                    ParquetRecordBatchReaderBuilder::try_new(file).map_err(|e| bad(path, format!("not a readable Parquet file ({e})")))?;
                let keep = selection(path, builder.schema(), options)?;
                let names = keep.iter().map(|&i| builder.schema().field(i).name().clone()).collect();
                // The projection yields the kept columns in file order: map each to its place.
                let mut sorted = keep.clone();
                sorted.sort_unstable();
                let order = keep.iter().map(|i| sorted.binary_search(i).expect("a kept column is in the projection")).collect();
                let mask = ProjectionMask::roots(builder.parquet_schema(), sorted);
                let reader = builder
                    .with_projection(mask)
                    .with_batch_size(READ_BATCH)
                    .build()
                    .map_err(|e| bad(path, format!("cannot read the Parquet file ({e})")))?;
                Ok(Self { path: path.into(), batches: Box::new(reader), names, keep: order, rows: 0, pending: None })
            }
            _ => {
                let reader = arrow_ipc::reader::FileReader::try_new(file, None)
                    .map_err(|e| bad(path, format!("not a readable Arrow IPC file ({e})")))?;
                let keep = selection(path, &reader.schema(), options)?;
                let names = keep.iter().map(|&i| reader.schema().field(i).name().clone()).collect();
                Ok(Self { path: path.into(), batches: Box::new(reader), names, keep, rows: 0, pending: None })
            }
        }
    }

    /// Names of the selected columns.
    pub fn columns(&self) -> &[String] {
        &self.names
    }

    /// Number of selected columns.
    pub fn width(&self) -> usize {
        self.keep.len()
    }

    /// The rows of one record batch as f32, row-major.
    fn convert(&self, batch: &RecordBatch) -> Result<Matrix> {
        let (rows, width) = (batch.num_rows(), self.keep.len());
        // From the engine's buffer store, where the matrix's buffer returns when dropped (a
        // fresh buffer each batch would pile up there, 256 batches deep).
        let mut matrix = Matrix::zeros(rows, width);
        let out = matrix.as_mut_slice();
        for (j, &c) in self.keep.iter().enumerate() {
            let column = batch.column(c);
            let name = &self.names[j];
            if column.null_count() > 0 {
                let r = (0..rows).find(|&r| column.is_null(r)).unwrap_or(0);
                return Err(Error::Parse {
                    path: self.path.clone(),
                    row: self.rows + r + 1,
                    column: j + 1,
                    message: format!("column '{name}' is empty (null)"),
                });
            }
            let put = |values: &mut dyn Iterator<Item = f32>| {
                for (r, v) in values.enumerate() {
                    out[r * width + j] = v;
                }
            };
            let mut write = put;
            match column.data_type() {
                DataType::Float32 => write(&mut column.as_primitive::<Float32Type>().values().iter().copied()),
                DataType::Float64 => write(&mut column.as_primitive::<Float64Type>().values().iter().map(|&v| v as f32)),
                DataType::Float16 => write(&mut column.as_primitive::<Float16Type>().values().iter().map(|v| v.to_f32())),
                DataType::Int8 => write(&mut column.as_primitive::<Int8Type>().values().iter().map(|&v| v as f32)),
                DataType::Int16 => write(&mut column.as_primitive::<Int16Type>().values().iter().map(|&v| v as f32)),
                DataType::Int32 => write(&mut column.as_primitive::<Int32Type>().values().iter().map(|&v| v as f32)),
                DataType::Int64 => write(&mut column.as_primitive::<Int64Type>().values().iter().map(|&v| v as f32)),
                DataType::UInt8 => write(&mut column.as_primitive::<UInt8Type>().values().iter().map(|&v| v as f32)),
                DataType::UInt16 => write(&mut column.as_primitive::<UInt16Type>().values().iter().map(|&v| v as f32)),
                DataType::UInt32 => write(&mut column.as_primitive::<UInt32Type>().values().iter().map(|&v| v as f32)),
                DataType::UInt64 => write(&mut column.as_primitive::<UInt64Type>().values().iter().map(|&v| v as f32)),
                other => return Err(bad(&self.path, format!("column '{name}' is {other}, not numeric"))),
            }
        }
        if let Some(i) = out.iter().position(|v| !v.is_finite() || v.abs() > crate::MAX_ABS_VALUE) {
            let (r, j) = (i / width, i % width);
            return Err(Error::Parse {
                path: self.path.clone(),
                row: self.rows + r + 1,
                column: j + 1,
                message: format!("column '{}' holds {}, not a finite value within ±{:e}", self.names[j], out[i], crate::MAX_ABS_VALUE),
            });
        }
        Ok(matrix)
    }

    /// The next chunk of at most `max_rows` rows, or `None` at the end of the file.
    ///
    /// # Errors
    /// [`Error::Parse`] naming the row (1-based, in the whole file) and column of a null,
    /// NaN or infinite cell; [`Error::BadFile`] for a damaged file.
    pub fn next_chunk(&mut self, max_rows: usize) -> Result<Option<Matrix>> {
        let max_rows = max_rows.max(1);
        let (batch, start) = match self.pending.take() {
            Some(p) => p,
            None => loop {
                match self.batches.next() {
                    None => return Ok(None),
                    Some(Err(e)) => return Err(bad(&self.path, format!("damaged data after row {} ({e})", self.rows))),
                    Some(Ok(b)) if b.num_rows() == 0 => continue,
                    Some(Ok(b)) => break (self.convert(&b)?, 0),
                }
            },
        };
        let end = (start + max_rows).min(batch.rows());
        let chunk = batch.slice_rows(start, end);
        if end < batch.rows() {
            self.pending = Some((batch, end));
        }
        self.rows += chunk.rows();
        Ok(Some(chunk))
    }
}

/// The column names of a Parquet or Arrow IPC file.
///
/// # Errors
/// As [`ColumnarChunks::open`].
pub fn read_columnar_header(path: &Path) -> Result<Vec<String>> {
    let file = File::open(path).map_err(|e| Error::io(path, e))?;
    let schema = match Format::of(path) {
        Format::Parquet => ParquetRecordBatchReaderBuilder::try_new(file)
            .map_err(|e| bad(path, format!("not a readable Parquet file ({e})")))?
            .schema()
            .clone(),
        _ => arrow_ipc::reader::FileReader::try_new(file, None)
            .map_err(|e| bad(path, format!("not a readable Arrow IPC file ({e})")))?
            .schema(),
    };
    Ok(schema.fields().iter().map(|f| f.name().clone()).collect())
}

/// Reads a whole Parquet or Arrow IPC file's selected columns.
///
/// # Errors
/// As [`ColumnarChunks`]; also [`Error::BadFile`] for a file without rows.
pub fn read_columnar(path: &Path, options: &CsvOptions) -> Result<Table> {
    let mut chunks = ColumnarChunks::open(path, options)?;
    let (mut values, mut rows) = (Vec::new(), 0);
    while let Some(m) = chunks.next_chunk(READ_BATCH)? {
        rows += m.rows();
        values.extend_from_slice(m.as_slice());
    }
    if rows == 0 {
        return Err(bad(path, "no data rows"));
    }
    Ok(Table { data: Matrix::from_vec(rows, chunks.width(), values), columns: Some(chunks.names) })
}

/// A table written as float32 columns in record batches: Parquet (zstd-compressed, row groups of
/// [`ROW_GROUP_ROWS`]) or an Arrow IPC file.
pub struct ColumnarWriter<'a> {
    schema: SchemaRef,
    sink: Sink<'a>,
}

enum Sink<'a> {
    Parquet(ArrowWriter<&'a mut (dyn Write + Send)>),
    Ipc(arrow_ipc::writer::FileWriter<&'a mut (dyn Write + Send)>),
}

impl<'a> ColumnarWriter<'a> {
    /// Starts a table with columns `names` on `out`.
    ///
    /// # Errors
    /// An I/O error of `out`.
    pub fn new(out: &'a mut (dyn Write + Send), format: Format, names: &[String]) -> std::io::Result<Self> {
        let fields: Vec<Field> = names.iter().map(|n| Field::new(n, DataType::Float32, false)).collect();
        let schema: SchemaRef = Arc::new(Schema::new(fields));
        let io = |e: &dyn std::fmt::Display| std::io::Error::other(e.to_string());
        let sink = if format == Format::Parquet {
            let props = WriterProperties::builder()
                .set_compression(Compression::ZSTD(ZstdLevel::default()))
                .set_max_row_group_row_count(Some(ROW_GROUP_ROWS))
                .build();
            Sink::Parquet(ArrowWriter::try_new(out, schema.clone(), Some(props)).map_err(|e| io(&e))?)
        } else {
            Sink::Ipc(arrow_ipc::writer::FileWriter::try_new(out, &schema).map_err(|e| io(&e))?)
        };
        Ok(Self { schema, sink })
    }

    /// Appends the rows of `block` (as many columns as the names).
    ///
    /// # Errors
    /// An I/O or encoding error.
    pub fn write(&mut self, block: &Matrix) -> std::io::Result<()> {
        let columns: Vec<ArrayRef> = (0..block.cols())
            .map(|j| Arc::new(Float32Array::from((0..block.rows()).map(|r| block.get(r, j)).collect::<Vec<f32>>())) as ArrayRef)
            .collect();
        let batch = RecordBatch::try_new(self.schema.clone(), columns).map_err(|e| std::io::Error::other(e.to_string()))?;
        match &mut self.sink {
            Sink::Parquet(w) => w.write(&batch).map_err(|e| std::io::Error::other(e.to_string())),
            Sink::Ipc(w) => w.write(&batch).map_err(|e| std::io::Error::other(e.to_string())),
        }
    }

    /// Writes the file's footer; the file is incomplete without it.
    ///
    /// # Errors
    /// An I/O or encoding error.
    pub fn finish(self) -> std::io::Result<()> {
        match self.sink {
            Sink::Parquet(w) => w.close().map(|_| ()).map_err(|e| std::io::Error::other(e.to_string())),
            Sink::Ipc(mut w) => w.finish().map_err(|e| std::io::Error::other(e.to_string())),
        }
    }
}
