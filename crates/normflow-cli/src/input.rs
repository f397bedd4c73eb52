//! Reading data files for a model: column selection by the model's recorded names, the context
//! columns of a conditional model, and width errors that name the file.

use std::path::Path;

use normflow::data::{read_table, CsvOptions, Table};
use normflow::{Flow, Matrix};

use crate::commands::CliError;

/// Key of the context column names in a model's metadata.
pub const CONTEXT_COLUMNS_KEY: &str = "context_columns";

/// The context column names a conditional model recorded at training time.
pub fn model_context_columns(flow: &Flow) -> Option<Vec<String>> {
    serde_json::from_value(flow.meta.extra.get(CONTEXT_COLUMNS_KEY)?.clone()).ok()
}

/// The context columns to read for `flow`: none for an unconditional model, else `given`
/// (`--context-columns`) or the names recorded at training time.
pub fn context_names(flow: &Flow, given: Option<&[String]>) -> Result<Option<Vec<String>>, CliError> {
    match (flow.context_dim(), given) {
        (0, Some(_)) => Err(CliError::Usage("--context-columns given, but the model is unconditional".into())),
        (0, None) => Ok(None),
        (k, given) => Ok(Some(given.map(<[String]>::to_vec).or_else(|| model_context_columns(flow)).ok_or_else(|| {
            CliError::Usage(format!("the model is conditional on {k} context columns; name them with --context-columns"))
        })?)),
    }
}

/// Reads the context columns `names` of `path` (none when `names` is `None`).
pub fn read_context(path: &Path, flow: &Flow, names: Option<&[String]>) -> Result<Option<Matrix>, CliError> {
    let Some(names) = names else { return Ok(None) };
    let t = read_table(path, &CsvOptions { columns: Some(names.to_vec()), ..Default::default() })?;
    if t.data.cols() != flow.context_dim() {
        return Err(CliError::Usage(format!(
            "{}: {} context columns given, the model expects {}",
            path.display(),
            t.data.cols(),
            flow.context_dim()
        )));
    }
    Ok(Some(t.data))
}

/// Reads `path` for `flow`: data columns from `--columns`, else the model's own column names
/// when the file's header has them all, else every column but the context ones; and, for a
/// conditional model, the context columns (`--context-columns`, else the recorded ones).
/// Widths must match the model.
pub fn read_for_model(
    path: &Path,
    flow: &Flow,
    columns: Option<&[String]>,
    context_columns: Option<&[String]>,
) -> Result<(Table, Option<Matrix>), CliError> {
    let context_names = context_names(flow, context_columns)?;
    let context = read_context(path, flow, context_names.as_deref())?;
    let drop = context_names.clone().unwrap_or_default();
    let table = match (columns, &flow.meta.columns) {
        (Some(c), _) => read_table(path, &CsvOptions { columns: Some(c.to_vec()), ..Default::default() })?,
        (None, Some(names)) => match read_table(path, &CsvOptions { columns: Some(names.clone()), ..Default::default() }) {
            // The model's columns by name when the header has them all.
            Ok(t) if t.columns.as_deref() == Some(names.as_slice()) => t,
            _ => read_table(path, &CsvOptions { drop, ..Default::default() })?,
        },
        (None, None) => read_table(path, &CsvOptions { drop, ..Default::default() })?,
    };
    if table.data.cols() == flow.dim() && !flow.dequantized_columns().is_empty() {
        // Integer columns are scored at v + u with one fixed uniform draw (an upper bound on −log P(v)).
        let data = flow.dequantize_rows(&table.data, &mut normflow::Rng::new(0))?;
        return Ok((Table { data, columns: table.columns }, context));
    }
    if table.data.cols() != flow.dim() {
        let names = flow.meta.columns.as_ref().map(|c| format!(" ({})", c.join(", "))).unwrap_or_default();
        return Err(CliError::Usage(format!(
            "{}: has {} columns, the model expects {}{names}; choose them with --columns",
            path.display(),
            table.data.cols(),
            flow.dim()
        )));
    }
    Ok((table, context))
}

/// Loads a model, naming the file in any error.
pub fn load_model(path: &Path) -> Result<Flow, CliError> {
    Ok(Flow::load(path)?)
}
