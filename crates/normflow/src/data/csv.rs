//! Numeric CSV: optional header (detected), column selection, and precise errors.

use std::io::Write;
use std::path::Path;

use super::{resolve_column, Table};
use crate::engine::Matrix;
use crate::{Error, Result};

/// How to read a CSV file.
#[derive(Clone, Debug, Default, PartialEq)]
pub struct CsvOptions {
    /// Keep only these columns, in this order: header names, or 1-based positions.
    pub columns: Option<Vec<String>>,
    /// Drop these columns (names or 1-based positions), e.g. a label or an id.
    pub drop: Vec<String>,
}

/// Reads a numeric CSV file, gzip-compressed or not. A first line with any non-numeric field is
/// taken as a header. Blank lines are skipped; fields are trimmed.
///
/// # Errors
/// [`Error::Parse`] naming the 1-based line and column of an empty, non-numeric, NaN or
/// infinite cell or of a row with the wrong number of fields; [`Error::BadFile`] for an empty
/// file or unknown columns; [`Error::Io`] if it cannot be read.
pub fn read_csv(path: &Path, options: &CsvOptions) -> Result<Table> {
    let mut text = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    if text.starts_with(&[0x1f, 0x8b]) {
        // gzip-compressed CSV (`.csv.gz`).
        let mut out = Vec::new();
        std::io::Read::read_to_end(&mut flate2::read::MultiGzDecoder::new(&text[..]), &mut out)
            .map_err(|e| Error::BadFile { path: path.into(), message: format!("damaged gzip data: {e}") })?;
        text = out;
    }
    let text =
        String::from_utf8(text).map_err(|_| Error::BadFile { path: path.into(), message: "not UTF-8 text (is it a CSV file?)".into() })?;
    let mut lines = text.lines().enumerate().filter(|(_, l)| !l.trim().is_empty());
    let (first_no, first) = lines.next().ok_or_else(|| Error::BadFile { path: path.into(), message: "the file is empty".into() })?;
    let fields: Vec<&str> = first.split(',').map(str::trim).collect();
    let header = if fields.iter().any(|f| f.parse::<f64>().is_err()) {
        Some(fields.iter().map(|s| s.to_string()).collect::<Vec<_>>())
    } else {
        None
    };
    let cols = fields.len();
    let keep: Vec<usize> = {
        let base: Vec<usize> = match &options.columns {
            Some(sel) => sel.iter().map(|s| resolve_column(path, s, header.as_deref(), cols)).collect::<Result<_>>()?,
            None => (0..cols).collect(),
        };
        let dropped = options.drop.iter().map(|s| resolve_column(path, s, header.as_deref(), cols)).collect::<Result<Vec<_>>>()?;
        base.into_iter().filter(|c| !dropped.contains(c)).collect()
    };
    if keep.is_empty() {
        return Err(Error::BadFile { path: path.into(), message: "no columns left to read".into() });
    }
    let mut data = Vec::new();
    let mut rows = 0;
    let mut parse_line = |no: usize, line: &str| -> Result<()> {
        let fields: Vec<&str> = line.split(',').map(str::trim).collect();
        if fields.len() != cols {
            return Err(Error::Parse {
                path: path.into(),
                row: no + 1,
                column: fields.len().min(cols) + 1,
                message: format!("expected {cols} fields, found {}", fields.len()),
            });
        }
        for &c in &keep {
            let f = fields[c];
            let bad = |message: String| Error::Parse { path: path.into(), row: no + 1, column: c + 1, message };
            if f.is_empty() {
                return Err(bad("missing value".into()));
            }
            let v: f64 = f.parse().map_err(|_| bad(format!("'{f}' is not a number")))?;
            if !v.is_finite() {
                return Err(bad(format!("non-finite value '{f}'")));
            }
            data.push(v as f32);
        }
        rows += 1;
        Ok(())
    };
    if header.is_none() {
        parse_line(first_no, first)?;
    }
    for (no, line) in lines {
        parse_line(no, line)?;
    }
    if rows == 0 {
        return Err(Error::BadFile { path: path.into(), message: "no data rows".into() });
    }
    let columns = header.map(|h| keep.iter().map(|&c| h[c].clone()).collect());
    Ok(Table { data: Matrix::from_vec(rows, keep.len(), data), columns })
}

/// Writes `data` as CSV with an optional header line. Values use the shortest representation
/// that reads back to the same `f32`.
///
/// # Errors
/// Any I/O error of `w`.
pub fn write_csv(w: &mut dyn Write, data: &Matrix, header: Option<&[String]>) -> std::io::Result<()> {
    if let Some(h) = header {
        writeln!(w, "{}", h.join(","))?;
    }
    let mut line = String::new();
    for i in 0..data.rows() {
        line.clear();
        for (j, v) in data.row(i).iter().enumerate() {
            if j > 0 {
                line.push(',');
            }
            line.push_str(&v.to_string());
        }
        line.push('\n');
        w.write_all(line.as_bytes())?;
    }
    Ok(())
}
