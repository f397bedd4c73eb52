//! Atomic file writes: a temporary file beside the target, then a rename, so that a reader (or
//! a crash) never sees half a file and a failed write never clobbers a good one.

use std::io::Write;
use std::path::Path;

use crate::{Error, Result};

/// Writes `path` atomically with whatever `write` produces.
///
/// The data goes to a hidden temporary file in the same directory, is flushed to disk, and is
/// then renamed over `path`. On any error the temporary file is removed and `path` is untouched.
///
/// # Errors
/// [`Error::Io`] naming `path` if the directory is not writable or the write fails; any error
/// `write` returns.
pub fn write_atomic(path: &Path, write: impl FnOnce(&mut dyn Write) -> Result<()>) -> Result<()> {
    let dir = match path.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name = path.file_name().ok_or_else(|| Error::io(path, std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a file path")))?;
    let tmp = dir.join(format!(".{}.tmp-{}", name.to_string_lossy(), std::process::id()));
    let result = (|| {
        let file = std::fs::File::create(&tmp).map_err(|e| Error::io(path, e))?;
        let mut w = std::io::BufWriter::new(file);
        write(&mut w)?;
        let file = w.into_inner().map_err(|e| Error::io(path, e.into_error()))?;
        file.sync_all().map_err(|e| Error::io(path, e))?;
        std::fs::rename(&tmp, path).map_err(|e| Error::io(path, e))
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
