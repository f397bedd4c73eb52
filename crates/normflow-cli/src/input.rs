//! Reading data files for a model: column selection by the model's recorded names, the context
//! columns of a conditional model, and width errors that name the file.

use std::path::Path;

use normflow::data::{read_header, read_table, CsvOptions, Table};
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

/// How a data file's columns are matched to a model's.
#[derive(Clone, Copy, Debug, Default)]
pub struct Selection<'a> {
    /// `--columns`: these columns, by name or 1-based position.
    pub columns: Option<&'a [String]>,
    /// `--context-columns` of a conditional model (default: the recorded names).
    pub context_columns: Option<&'a [String]>,
    /// `--by-position`: ignore the model's column names and take the file's columns in order.
    pub by_position: bool,
}

/// The columns to read from `path` for a model trained on columns `names`: those names, found
/// in the file's header in any order. A header that lacks any of them is an error listing the
/// missing names and the header (`--by-position` takes the columns in order instead); a file
/// without a header is read by position.
pub fn columns_by_name(path: &Path, names: &[String]) -> Result<Option<Vec<String>>, CliError> {
    let Some(header) = read_header(path)? else { return Ok(None) };
    let missing: Vec<&str> = names.iter().filter(|n| !header.contains(n)).map(String::as_str).collect();
    if missing.is_empty() {
        return Ok(Some(names.to_vec()));
    }
    Err(CliError::Usage(format!(
        "{}: the model's columns {} are not in the file's header ({}); rename them, choose columns with --columns, or match by position with --by-position",
        path.display(),
        missing.join(", "),
        header.join(", ")
    )))
}

/// Reads `path` for `flow`: data columns from `--columns`, else the model's own column names
/// (see [`columns_by_name`]), else every column but the context ones; and, for a conditional
/// model, the context columns (`--context-columns`, else the recorded ones). Widths must match
/// the model.
pub fn read_for_model(path: &Path, flow: &Flow, select: Selection) -> Result<(Table, Option<Matrix>), CliError> {
    let context_names = context_names(flow, select.context_columns)?;
    let context = read_context(path, flow, context_names.as_deref())?;
    let drop = context_names.clone().unwrap_or_default();
    let by_name = match (select.columns, &flow.meta.columns) {
        (Some(c), _) => Some(c.to_vec()),
        (None, Some(names)) if !select.by_position => columns_by_name(path, names)?,
        _ => None,
    };
    let table = match by_name {
        Some(c) => read_table(path, &CsvOptions { columns: Some(c), ..Default::default() })?,
        None => read_table(path, &CsvOptions { drop, ..Default::default() })?,
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
