//! Safe output writes.
//!
//! A regular file is replaced atomically: a temporary file beside it, then a rename, so that a
//! reader (or a crash) never sees half a file and a failed write never clobbers a good one. A
//! symbolic link is followed, and its final target is the file replaced (the link stays a link).
//! Anything that is not a regular file — a character device such as `/dev/null`, a FIFO, a
//! socket, or `/dev/stdout` and the other `/proc` links to open descriptors — is written
//! through, streamed, and never renamed over.

use std::io::Write;
use std::path::{Path, PathBuf};

use crate::{Error, Result};

/// Symbolic links followed before giving up (as the kernel's `ELOOP` limit).
const MAX_LINKS: usize = 40;

/// Where the bytes of a write to a path go.
#[derive(Debug, PartialEq)]
enum Target {
    /// A regular file, new or existing (with its permissions), replaced by a rename.
    Replace { path: PathBuf, permissions: Option<std::fs::Permissions> },
    /// Not a regular file: opened and written in place.
    Through,
}

/// Follows the links of `path` to the file a write should replace, or says to write through.
fn resolve(path: &Path) -> Result<Target> {
    let mut current = path.to_path_buf();
    for _ in 0..MAX_LINKS {
        let meta = match std::fs::symlink_metadata(&current) {
            Ok(m) => m,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => return Ok(Target::Replace { path: current, permissions: None }),
            Err(e) => return Err(Error::io(path, e)),
        };
        let kind = meta.file_type();
        if kind.is_symlink() {
            let link = std::fs::read_link(&current).map_err(|e| Error::io(path, e))?;
            // Links inside /proc name open descriptors (`/dev/stdout` → `/proc/self/fd/1` →
            // `pipe:[…]`): only opening the link itself reaches what it names.
            if current.starts_with("/proc") || link.starts_with("/proc") {
                return Ok(Target::Through);
            }
            current = match current.parent() {
                Some(dir) if link.is_relative() => dir.join(link),
                _ => link,
            };
        } else if kind.is_file() {
            return Ok(Target::Replace { path: current, permissions: Some(meta.permissions()) });
        } else if kind.is_dir() {
            return Err(Error::io(path, std::io::Error::new(std::io::ErrorKind::IsADirectory, "is a directory")));
        } else {
            return Ok(Target::Through);
        }
    }
    Err(Error::io(path, std::io::Error::other("too many levels of symbolic links")))
}

/// Writes `path` with whatever `write` produces, never leaving half a file where a file was.
///
/// For a regular file (or a symbolic link to one, or a new path) the data goes to a hidden
/// temporary file in the target's directory, is flushed to disk, takes the existing file's
/// permissions, and is renamed over the target. On any error the temporary file is removed and
/// the target is untouched. Anything else (a device, a FIFO, `/dev/stdout`) is opened and
/// written through as a stream.
///
/// # Errors
/// [`Error::Io`] naming `path` if it is a directory, the directory is not writable or the write
/// fails; any error `write` returns, unchanged (so a caller's own error type passes through).
pub fn write_atomic<E: From<Error>>(path: &Path, write: impl FnOnce(&mut (dyn Write + Send)) -> Result<(), E>) -> Result<(), E> {
    match resolve(path)? {
        Target::Through => write_through(path, write),
        Target::Replace { path: target, permissions } => replace(path, &target, permissions, write),
    }
}

fn write_through<E: From<Error>>(path: &Path, write: impl FnOnce(&mut (dyn Write + Send)) -> Result<(), E>) -> Result<(), E> {
    let file = std::fs::OpenOptions::new().write(true).open(path).map_err(|e| Error::io(path, e))?;
    let mut w = std::io::BufWriter::new(file);
    write(&mut w)?;
    Ok(w.flush().map_err(|e| Error::io(path, e))?)
}

fn replace<E: From<Error>>(
    path: &Path,
    target: &Path,
    permissions: Option<std::fs::Permissions>,
    write: impl FnOnce(&mut (dyn Write + Send)) -> Result<(), E>,
) -> Result<(), E> {
    let dir = match target.parent() {
        Some(p) if !p.as_os_str().is_empty() => p,
        _ => Path::new("."),
    };
    let name =
        target.file_name().ok_or_else(|| Error::io(path, std::io::Error::new(std::io::ErrorKind::InvalidInput, "not a file path")))?;
    let tmp = dir.join(format!(".{}.tmp-{}", name.to_string_lossy(), std::process::id()));
    let result = (|| {
        let file = std::fs::File::create(&tmp).map_err(|e| Error::io(path, e))?;
        let mut w = std::io::BufWriter::new(file);
        write(&mut w)?;
        let file = w.into_inner().map_err(|e| Error::io(path, e.into_error()))?;
        file.sync_all().map_err(|e| Error::io(path, e))?;
        if let Some(p) = permissions {
            file.set_permissions(p).map_err(|e| Error::io(path, e))?;
        }
        Ok(std::fs::rename(&tmp, target).map_err(|e| Error::io(path, e))?)
    })();
    if result.is_err() {
        let _ = std::fs::remove_file(&tmp);
    }
    result
}
