//! NumPy `.npy` (format 1.0–3.0): little-endian `f4`/`f8` or unsigned bytes, C order; tables
//! are 1-D or 2-D, image sets any rank.

use std::io::Write;
use std::path::Path;

use crate::engine::Matrix;
use crate::{Error, Result};

const MAGIC: &[u8] = b"\x93NUMPY";

/// An `.npy` array of any rank, its values as f32 in C order.
#[derive(Clone, Debug, PartialEq)]
pub struct NpyArray {
    /// The dimensions.
    pub shape: Vec<usize>,
    /// The values, row-major.
    pub data: Vec<f32>,
}

/// Element types an `.npy` file may hold here.
#[derive(Clone, Copy)]
enum Dtype {
    F4,
    F8,
    U1,
}

/// Reads a 1-D (`n` rows of 1 column) or 2-D `f4`/`f8` array.
///
/// # Errors
/// [`Error::BadFile`] for a foreign, truncated or unsupported file (big-endian, Fortran order,
/// other dtypes, 3-D); [`Error::Parse`] naming the row and column of a NaN or infinite value.
pub fn read_npy(path: &Path) -> Result<Matrix> {
    let array = read_npy_array(path)?;
    let bad = |m: &str| Error::BadFile { path: path.into(), message: m.into() };
    let (rows, cols) = match array.shape[..] {
        [n] => (n, 1),
        [n, d] => (n, d),
        _ => return Err(bad("only 1-D and 2-D arrays are supported")),
    };
    Ok(Matrix::from_vec(rows, cols, array.data))
}

/// Reads an array of any rank of little-endian `f4`, `f8` or unsigned bytes (`u1`, as for
/// 8-bit images).
///
/// # Errors
/// As [`read_npy`], with any rank allowed; [`Error::Parse`] positions count rows along the
/// first dimension.
pub fn read_npy_array(path: &Path) -> Result<NpyArray> {
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
    let dtype = if descr.starts_with("'<f4'") || descr.starts_with("'float32'") {
        Dtype::F4
    } else if descr.starts_with("'<f8'") || descr.starts_with("'float64'") {
        Dtype::F8
    } else if descr.starts_with("'|u1'") || descr.starts_with("'uint8'") {
        Dtype::U1
    } else {
        return Err(bad("unsupported dtype (only little-endian float32 '<f4', float64 '<f8' and unsigned bytes '|u1')"));
    };
    let width = match dtype {
        Dtype::F4 => 4,
        Dtype::F8 => 8,
        Dtype::U1 => 1,
    };
    if field("fortran_order").is_some_and(|f| f.starts_with("True")) {
        return Err(bad("Fortran-ordered arrays are not supported; save with C order"));
    }
    let shape_s = field("shape").ok_or_else(|| bad("header has no 'shape'"))?;
    let inner = shape_s.strip_prefix('(').and_then(|s| s.split(')').next()).ok_or_else(|| bad("bad shape"))?;
    let shape: Vec<usize> = inner
        .split(',')
        .map(str::trim)
        .filter(|s| !s.is_empty())
        .map(|s| s.parse().map_err(|_| bad("bad shape")))
        .collect::<Result<_>>()?;
    if shape.is_empty() {
        return Err(bad("a 0-dimensional array holds no rows"));
    }
    let count = shape.iter().try_fold(1usize, |acc, &d| acc.checked_mul(d)).ok_or_else(|| bad("array sizes overflow"))?;
    let body = &bytes[hstart + hlen..];
    if count.checked_mul(width).is_none_or(|n| body.len() < n) {
        return Err(bad(&format!("truncated data: {} bytes for an array of shape {shape:?}", body.len())));
    }
    if count == 0 {
        return Err(bad("the array is empty"));
    }
    let per_row = count / shape[0];
    let mut data = Vec::with_capacity(count);
    for (k, c) in body.chunks_exact(width).take(count).enumerate() {
        let v = match dtype {
            Dtype::F4 => f32::from_le_bytes([c[0], c[1], c[2], c[3]]) as f64,
            Dtype::F8 => f64::from_le_bytes([c[0], c[1], c[2], c[3], c[4], c[5], c[6], c[7]]),
            Dtype::U1 => c[0] as f64,
        };
        if !(v as f32).is_finite() {
            let message = if v.is_finite() { "beyond the range of 32-bit floats (±3.4e38)" } else { "non-finite value" };
            return Err(Error::Parse { path: path.into(), row: k / per_row + 1, column: k % per_row + 1, message: message.into() });
        }
        data.push(v as f32);
    }
    Ok(NpyArray { shape, data })
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
