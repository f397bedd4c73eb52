//! Writing result rows: to a file (CSV or NPY by extension, atomically) or as CSV on stdout.

use std::io::Write;
use std::path::Path;

use normflow::data::{Format, TableWriter};
use normflow::io::write_atomic;
use normflow::Matrix;

use crate::commands::CliError;

/// Writes `rows` to `path`, or as CSV with a header to stdout.
pub fn write_rows(path: Option<&Path>, rows: &Matrix, header: &[String]) -> Result<(), CliError> {
    write_blocks(path, rows.rows(), header, |table| Ok(table.write(rows)?))
}

/// Checks an output path's format before any work starts.
pub fn check_output(path: Option<&Path>) -> Result<(), CliError> {
    path.map(Format::for_output).transpose()?;
    Ok(())
}

/// Writes a table of `rows` rows under `header` that `fill` produces block by block: to `path`
/// (CSV or NPY by extension, atomically), or as CSV to stdout.
pub fn write_blocks(
    path: Option<&Path>,
    rows: usize,
    header: &[String],
    mut fill: impl FnMut(&mut TableWriter) -> Result<(), CliError>,
) -> Result<(), CliError> {
    let cols = header.len();
    match path {
        Some(p) => {
            let format = Format::for_output(p)?;
            let io = |e| normflow::Error::Io { path: p.into(), source: e };
            write_atomic(p, |w| {
                let mut table = TableWriter::to_file(w, format, rows, cols, Some(header)).map_err(io)?;
                fill(&mut table)?;
                Ok(table.finish().map_err(io)?)
            })
        }
        None => {
            let stdout = std::io::stdout();
            let mut lock = std::io::BufWriter::new(stdout.lock());
            fill(&mut TableWriter::new(&mut lock, Format::Csv, rows, cols, Some(header))?)?;
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
