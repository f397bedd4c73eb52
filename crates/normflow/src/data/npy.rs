//! NumPy `.npy` (format 1.0–3.0): little-endian `f4`/`f8`, C order, 1-D or 2-D.

use std::io::Write;
use std::path::Path;

use crate::engine::Matrix;
use crate::{Error, Result};

const MAGIC: &[u8] = b"\x93NUMPY";

/// Reads a 1-D (`n` rows of 1 column) or 2-D `f4`/`f8` array.
///
/// # Errors
/// [`Error::BadFile`] for a foreign, truncated or unsupported file (big-endian, Fortran order,
/// other dtypes, 3-D); [`Error::Parse`] naming the row and column of a NaN or infinite value.
pub fn read_npy(path: &Path) -> Result<Matrix> {
    let bytes = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let bad = |m: &str| Error::BadFile { path: path.into(), message: m.into() };
    if bytes.len() < 10 || &bytes[..6] != MAGIC {
        return Err(bad("not an NPY file (bad magic)"));
    }
    let (hlen, hstart) = match bytes[6] {
        1 => (u16::from_le_bytes([bytes[8], bytes[9]]) as usize, 10),
        2 | 3 if bytes.len() >= 12 => (u32::from_le_bytes([bytes[8], bytes[9], bytes[10], bytes[11]]) as usize, 12),
        _ => return Err(bad("unsupported NPY version")),
    };
    let header = bytes.get(hstart..hstart + hlen).ok_or_else(|| bad("truncated header"))?;
    let header = std::str::from_utf8(header).map_err(|_| bad("header is not text"))?;
    let field = |key: &str| -> Option<&str> {
        let at = header.find(&format!("'{key}'"))? + key.len() + 2;
        let rest = header[at..].trim_start().strip_prefix(':')?.trim_start();
        Some(rest)
    };
    let descr = field("descr").ok_or_else(|| bad("header has no 'descr'"))?;
    let width = if descr.starts_with("'<f4'") || descr.starts_with("'float32'") {
        4
    } else if descr.starts_with("'<f8'") || descr.starts_with("'float64'") {
        8
    } else {
        return Err(bad("unsupported dtype (only little-endian float32 '<f4' and float64 '<f8')"));
    };
    if field("fortran_order").is_some_and(|f| f.starts_with("True")) {
        return Err(bad("Fortran-ordered arrays are not supported; save with C order"));
    }
    let shape_s = field("shape").ok_or_else(|| bad("header has no 'shape'"))?;
    let inner = shape_s.strip_prefix('(').and_then(|s| s.split(')').next()).ok_or_else(|| bad("bad shape"))?;
    let dims: Vec<usize> = inner
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().map_err(|_| bad("bad shape")))
        .collect::<Result<_>>()?;
    let (rows, cols) = match dims[..] {
        [n] => (n, 1),
        [n, d] => (n, d),
        _ => return Err(bad("only 1-D and 2-D arrays are supported")),
    };
    let body = &bytes[hstart + hlen..];
    if rows.checked_mul(cols).and_then(|n| n.checked_mul(width)).is_none_or(|n| body.len() < n) {
        return Err(bad(&format!("truncated data: {} bytes for a {rows}×{cols} array", body.len())));
    }
    if rows == 0 || cols == 0 {
        return Err(bad("the array is empty"));
    }
    let mut data = Vec::with_capacity(rows * cols);
    for (k, c) in body.chunks_exact(width).take(rows * cols).enumerate() {
        let v = if width == 4 {
            f32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64
        } else {
            f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]])
        };
        if !(v as f32).is_finite() {
            let message = if v.is_finite() { "beyond the range of 32-bit floats (±3.4e38)" } else { "non-finite value" };
            return Err(Error::Parse { path: path.into(), row: k / cols + 1, column: k % cols + 1, message: message.into() });
        }
        data.push(v as f32);
    }
    Ok(Matrix::from_vec(rows, cols, data))
}

/// Writes a 2-D little-endian `f4` array (format 1.0).
///
/// # Errors
/// Any I/O error of `w`.
pub fn write_npy(w: &mut dyn Write, data: &Matrix) -> std::io::Result<()> {
    write_npy_header(w, data.rows(), data.cols())?;
    write_npy_rows(w, data)
}

/// Writes the header of a 2-D little-endian `f4` array of `rows × cols` (format 1.0); the
/// values follow with [`write_npy_rows`].
pub(crate) fn write_npy_header(w: &mut dyn Write, rows: usize, cols: usize) -> std::io::Result<()> {
    let mut header = format!("{{'descr': '<f4', 'fortran_order': False, 'shape': ({rows}, {cols}), }}");
    let total = MAGIC.len() + 4 + header.len() + 1;
    header.push_str(&" ".repeat((64 - total % 64) % 64));
    header.push('\n');
    w.write_all(MAGIC)?;
    w.write_all(&[1, 0])?;
    w.write_all(&(header.len() as u16).to_le_bytes())?;
    w.write_all(header.as_bytes())
}

/// Writes the values of `data`, row by row, as little-endian `f4`.
pub(crate) fn write_npy_rows(w: &mut dyn Write, data: &Matrix) -> std::io::Result<()> {
    let bytes: Vec<u8> = data.as_slice().iter().flat_map(|v| v.to_le_bytes()).collect();
    w.write_all(&bytes)
}
