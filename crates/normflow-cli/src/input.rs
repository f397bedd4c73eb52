//! Reading data files for a model: column selection by the model's recorded names, and width
//! errors that name the file.

use std::path::Path;

use normflow::data::{read_table, CsvOptions, Table};
use normflow::Flow;

use crate::commands::CliError;

/// Reads `path` for `flow`: the `--columns` given, else the model's own column names when the
/// file's header has them all, else every column; the width must match the model.
pub fn read_for_model(path: &Path, flow: &Flow, columns: Option<&[String]>) -> Result<Table, CliError> {
    let mut options = CsvOptions { columns: columns.map(<[String]>::to_vec), ..Default::default() };
    if options.columns.is_none() {
        if let Some(names) = &flow.meta.columns {
            // Use the model's columns by name when the header has them all.
            let probe = read_table(path, &CsvOptions { columns: Some(names.clone()), ..Default::default() });
            if let Ok(t) = probe {
                if t.columns.as_deref() == Some(names.as_slice()) {
                    return Ok(t);
                }
            }
        }
    }
    let table = read_table(path, &std::mem::take(&mut options))?;
    if table.data.cols() != flow.dim() {
        let names = flow.meta.columns.as_ref().map(|c| format!(" ({})", c.join(", "))).unwrap_or_default();
        return Err(CliError::Usage(format!(
            "{}: has {} columns, the model expects {}{names}; choose them with --columns",
            path.display(),
            table.data.cols(),
            flow.dim()
        )));
    }
    Ok(table)
}

/// Loads a model, naming the file in any error.
pub fn load_model(path: &Path) -> Result<Flow, CliError> {
    Ok(Flow::load(path)?)
}
