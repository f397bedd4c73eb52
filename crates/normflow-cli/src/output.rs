//! Writing result rows: to a file (CSV or NPY by extension, atomically) or as CSV on stdout.

use std::io::Write;
use std::path::Path;

use normflow::data::{write_csv, write_table};
use normflow::Matrix;

use crate::commands::CliError;

/// Writes `rows` to `path`, or as CSV with a header to stdout.
pub fn write_rows(path: Option<&Path>, rows: &Matrix, header: &[String]) -> Result<(), CliError> {
    match path {
        Some(p) => Ok(write_table(p, rows, Some(header))?),
        None => {
            let stdout = std::io::stdout();
            let mut lock = std::io::BufWriter::new(stdout.lock());
            write_csv(&mut lock, rows, Some(header))?;
            lock.flush()?;
            Ok(())
        }
    }
}

/// Default column names `prefix1..prefixd`.
pub fn numbered(prefix: &str, d: usize) -> Vec<String> {
    (1..=d).map(|i| format!("{prefix}{i}")).collect()
}

/// Whether an error is a closed stdout pipe (e.g. `normflow sample m | head`), which is no failure.
pub fn is_broken_pipe(e: &CliError) -> bool {
    match e {
        CliError::Io(io) => io.kind() == std::io::ErrorKind::BrokenPipe,
        CliError::Flow(normflow::Error::Io { source, .. }) => source.kind() == std::io::ErrorKind::BrokenPipe,
        _ => false,
    }
}
