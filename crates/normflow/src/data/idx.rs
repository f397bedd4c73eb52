//! IDX files (the MNIST format), plain or gzip-compressed: a magic number naming the element type
//! and the number of dimensions, the big-endian sizes, then the values.

use std::io::Read;
use std::path::Path;

use crate::engine::Matrix;
use crate::{Error, Result};

/// The values of an IDX file of unsigned bytes: one row per item (an image's pixels row-major,
/// or one label), and the item shape (`[height, width]` for images, empty for labels).
#[derive(Clone, Debug, PartialEq)]
pub struct IdxData {
    /// One row per item.
    pub data: Matrix,
    /// The shape of one item: the file's dimensions after the first.
    pub item_shape: Vec<usize>,
}

/// Reads an IDX file of unsigned bytes (type code 0x08), plain or gzip-compressed.
///
/// # Errors
/// [`Error::Io`] if it cannot be read; [`Error::BadFile`] naming the file for a wrong magic
/// number, another element type, no dimensions, or fewer values than its header promises.
pub fn read_idx(path: &Path) -> Result<IdxData> {
    let raw = std::fs::read(path).map_err(|e| Error::io(path, e))?;
    let bad = |message: String| Error::BadFile { path: path.into(), message };
    let bytes = if raw.starts_with(&[0x1f, 0x8b]) {
        let mut out = Vec::new();
        flate2::read::MultiGzDecoder::new(raw.as_slice()).read_to_end(&mut out).map_err(|e| bad(format!("damaged gzip data: {e}")))?;
        out
    } else {
        raw
    };
    if bytes.len() < 4 || bytes[0] != 0 || bytes[1] != 0 {
        return Err(bad("not an IDX file (its magic number does not start with two zero bytes)".into()));
    }
    if bytes[2] != 0x08 {
        return Err(bad(format!("IDX element type 0x{:02x} is not supported (only unsigned bytes, 0x08)", bytes[2])));
    }
    let dims = bytes[3] as usize;
    if dims == 0 || bytes.len() < 4 + 4 * dims {
        return Err(bad(format!("IDX header of {dims} dimensions is missing or truncated")));
    }
    let sizes: Vec<usize> =
        (0..dims).map(|k| u32::from_be_bytes([bytes[4 + 4 * k], bytes[5 + 4 * k], bytes[6 + 4 * k], bytes[7 + 4 * k]]) as usize).collect();
    let items = sizes[0];
    let per_item: usize = sizes[1..].iter().product();
    let values = &bytes[4 + 4 * dims..];
    let expected = items.checked_mul(per_item).ok_or_else(|| bad("IDX sizes overflow".into()))?;
    if values.len() < expected {
        return Err(bad(format!(
            "truncated: the header promises {items} items of {per_item} values ({expected} bytes), the file holds {}",
            values.len()
        )));
    }
    if items == 0 || per_item == 0 {
        return Err(bad("the IDX file holds no values".into()));
    }
    let data = values[..expected].iter().map(|&v| v as f32).collect();
    Ok(IdxData { data: Matrix::from_vec(items, per_item, data), item_shape: sizes[1..].to_vec() })
}
