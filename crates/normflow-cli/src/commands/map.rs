//! `normflow log-prob`, `encode` and `decode`: one output row per input row.

use normflow::data::{read_header, read_table, CsvOptions, Format, RowChunks};
use normflow::{Flow, Matrix, Rng};

use super::CliError;
use crate::cli::MapArgs;
use crate::input::{columns_by_name, context_names, read_context, read_for_model, Selection};
use crate::ode_flags::load_model_with;
use crate::output::{check_output, numbered, write_blocks, write_rows};

/// Rows per block when `log-prob` streams a file: a flow's intermediate values for a block of
/// 65,536 rows of a 9-column NSF take ~600 MB, for 8,192 rows a tenth of that.
const STREAM_ROWS: usize = 8_192;

/// Which map to apply.
pub enum Mapping {
    /// `log p(x)` per row.
    LogProb,
    /// `z = f⁻¹(x)`.
    Encode,
    /// `x = f(z)`.
    Decode,
}

pub fn run(a: MapArgs, mapping: Mapping) -> Result<(), CliError> {
    check_output(a.output.as_deref())?;
    let flow = load_model_with(&a.model, &a.ode)?;
    let data_names = flow.meta.columns.clone().unwrap_or_else(|| numbered("x", flow.dim()));
    let select = Selection { columns: a.columns.as_deref(), context_columns: a.context_columns.as_deref(), by_position: a.by_position };
    let (rows, header) = match mapping {
        _ if Format::of(&a.data) != Format::Npy && a.output.as_deref().is_none_or(|p| Format::of(p) != Format::Npy) => {
            return stream_map(&a, &flow, &mapping, &data_names);
        }
        Mapping::LogProb => {
            let (t, c) = read_for_model(&a.data, &flow, select)?;
            let lp = flow.log_prob(&t.data, c.as_ref())?;
            (Matrix::from_vec(lp.len(), 1, lp), vec!["log_prob".to_string()])
        }
        Mapping::Encode => {
            let (t, c) = read_for_model(&a.data, &flow, select)?;
            (flow.encode(&t.data, c.as_ref())?, numbered("z", flow.dim()))
        }
        Mapping::Decode => {
            let names = context_names(&flow, a.context_columns.as_deref())?;
            let context = read_context(&a.data, &flow, names.as_deref())?;
            let t = read_table(&a.data, &CsvOptions { columns: a.columns.clone(), drop: names.unwrap_or_default() })?;
            if t.data.cols() != flow.dim() {
                return Err(CliError::Usage(format!(
                    "{}: has {} columns, the model's latent space has {}",
                    a.data.display(),
                    t.data.cols(),
                    flow.dim()
                )));
            }
            (flow.decode(&t.data, context.as_ref())?, data_names)
        }
    };
    write_rows(a.output.as_deref(), &rows, &header)
}

/// `log-prob`, `encode` or `decode` of a CSV, Parquet or Arrow file, one block of rows at a
/// time: memory stays bounded for any number of rows (the output, CSV, Parquet or Arrow, is
/// written as it goes). Columns are chosen as for a whole file: `--columns`, else (but for
/// latent codes) the model's names, else all but the context.
fn stream_map(a: &MapArgs, flow: &Flow, mapping: &Mapping, data_names: &[String]) -> Result<(), CliError> {
    let decode = matches!(mapping, Mapping::Decode);
    let context = context_names(flow, a.context_columns.as_deref())?.unwrap_or_default();
    // Latent codes have no names of the model's: decoding takes `--columns` or every column.
    let model_names = if decode { None } else { flow.meta.columns.as_ref() };
    let named = match (&a.columns, model_names) {
        (Some(c), _) => Some(c.clone()),
        (None, Some(names)) if !a.by_position => columns_by_name(&a.data, names)?,
        _ => None,
    };
    let data_columns = match named {
        Some(c) => c,
        None => {
            // A file without a header: its columns by 1-based position.
            let all = match read_header(&a.data)? {
                Some(h) => h,
                None => (1..=RowChunks::open(&a.data, &CsvOptions::default())?.width()).map(|k| k.to_string()).collect(),
            };
            all.into_iter().filter(|c| !context.contains(c)).collect()
        }
    };
    if data_columns.len() != flow.dim() {
        let names = model_names.map(|c| format!(" ({})", c.join(", "))).unwrap_or_default();
        let what = if decode { "the model's latent space has" } else { "the model expects" };
        return Err(CliError::Usage(format!(
            "{}: has {} columns, {what} {}{names}; choose them with --columns",
            a.data.display(),
            data_columns.len(),
            flow.dim()
        )));
    }
    let selected = data_columns.iter().chain(&context).cloned().collect();
    let mut chunks = RowChunks::open(&a.data, &CsvOptions { columns: Some(selected), ..Default::default() })?;
    let d = flow.dim();
    // Integer columns are scored at v + u with one fixed uniform draw, as for a whole file.
    let mut noise = Rng::new(0);
    let mut rows = 0;
    let header = match mapping {
        Mapping::Encode => numbered("z", d),
        Mapping::Decode => data_names.to_vec(),
        Mapping::LogProb => vec!["log_prob".to_string()],
    };
    write_blocks(a.output.as_deref(), 0, &header, |table| {
        while let Some(chunk) = chunks.next_chunk(STREAM_ROWS)? {
            let x = chunk.slice_cols(0, d);
            let c = (!context.is_empty()).then(|| chunk.slice_cols(d, chunk.cols()));
            let x = if decode || flow.dequantized_columns().is_empty() { x } else { flow.dequantize_rows(&x, &mut noise)? };
            let out = match mapping {
                Mapping::Encode => flow.encode(&x, c.as_ref())?,
                Mapping::Decode => flow.decode(&x, c.as_ref())?,
                Mapping::LogProb => {
                    let lp = flow.log_prob(&x, c.as_ref())?;
                    Matrix::from_vec(lp.len(), 1, lp)
                }
            };
            rows += out.rows();
            table.write(&out)?;
            // Buffers coming back from the worker threads would pile up in this thread's store.
            normflow::engine::trim_thread_cache(64 << 20);
        }
        if rows == 0 {
            return Err(normflow::Error::BadFile { path: a.data.clone(), message: "no data rows".into() }.into());
        }
        Ok(())
    })
}
