//! `normflow sample`: draws rows block by block and streams them out, so memory stays bounded
//! whatever `-n` is.

use normflow::data::{read_table, CsvOptions};
use normflow::{Flow, Matrix, Rng};

use super::CliError;
use crate::cli::SampleArgs;
use crate::input::{model_context_columns, read_context};
use crate::ode_flags::load_model_with;
use crate::output::{check_output, numbered, write_blocks};

/// Values drawn per block (rows × columns): about 4 MB of samples in memory at a time.
const BLOCK_VALUES: usize = 1 << 20;

/// Rows drawn per block at most: the flow's intermediate buffers grow with the block's rows.
const BLOCK_ROWS: usize = 1 << 16;

/// The most values one run writes: 10¹² (about 10 TB of CSV).
const MAX_VALUES: u128 = 1_000_000_000_000;

/// Most bytes of recycled buffers this thread keeps between blocks: the blocks' buffers come
/// back from the worker threads and would otherwise pile up in this thread's store (627 MB when
/// sampling 10M rows of 9 columns).
const STORE_BYTES: usize = 64 << 20;

/// Rows per block for rows of `dim` values.
fn block_rows(dim: usize) -> usize {
    (BLOCK_VALUES / dim.max(1)).clamp(1, BLOCK_ROWS)
}

/// Refuses a request for more than [`MAX_VALUES`] values, or for none.
fn check_count(rows: u128, dim: usize, what: &str) -> Result<(), CliError> {
    if rows == 0 {
        return Err(CliError::Usage(format!("{what} is 0: nothing to sample")));
    }
    if rows * dim as u128 > MAX_VALUES {
        return Err(CliError::Usage(format!(
            "{what} asks for {rows} rows of {dim} values, over the limit of {MAX_VALUES} values (about 10 TB of CSV) for one run; sample in several runs with different --seed values"
        )));
    }
    Ok(())
}

/// The context rows for a conditional model: the model's context columns by name when the file
/// has them, else all its columns.
fn read_contexts(path: &std::path::Path, flow: &Flow) -> Result<Matrix, CliError> {
    let by_name = model_context_columns(flow).and_then(|names| read_context(path, flow, Some(&names)).ok().flatten());
    let context = match by_name {
        Some(c) => c,
        None => read_table(path, &CsvOptions::default())?.data,
    };
    if context.cols() != flow.context_dim() {
        return Err(CliError::Usage(format!(
            "{}: has {} columns, the model's context has {}",
            path.display(),
            context.cols(),
            flow.context_dim()
        )));
    }
    Ok(context)
}

pub fn run(a: SampleArgs) -> Result<(), CliError> {
    check_output(a.output.as_deref())?;
    let flow = load_model_with(&a.model, &a.ode)?;
    let header = flow.meta.columns.clone().unwrap_or_else(|| numbered("x", flow.dim()));
    let block = block_rows(flow.dim());
    let mut rng = Rng::new(a.seed);
    match (&a.context, flow.context_dim()) {
        (None, 0) => {
            check_count(a.num as u128, flow.dim(), "-n")?;
            write_blocks(a.output.as_deref(), a.num, &header, |table| {
                for start in (0..a.num).step_by(block) {
                    table.write(&flow.sample_discrete(block.min(a.num - start), None, &mut rng)?)?;
                    normflow::engine::trim_thread_cache(STORE_BYTES);
                }
                Ok(())
            })
        }
        (None, k) => Err(CliError::Usage(format!(
            "{}: the model is conditional on {k} context columns; give them with --context FILE",
            a.model.display()
        ))),
        (Some(_), 0) => Err(CliError::Usage(format!("--context given, but {} is unconditional", a.model.display()))),
        (Some(path), _) => {
            let context = read_contexts(path, &flow)?;
            check_count(context.rows() as u128 * a.per_context as u128, flow.dim(), "--per-context × context rows")?;
            // `per_context` samples per context row, in row order, a block of context rows at a time.
            let contexts_per_block = (block / a.per_context).max(1);
            write_blocks(a.output.as_deref(), context.rows() * a.per_context, &header, |table| {
                for start in (0..context.rows()).step_by(contexts_per_block) {
                    let end = (start + contexts_per_block).min(context.rows());
                    let repeated = context.slice_rows(start, end).repeat_rows(a.per_context);
                    table.write(&flow.sample_discrete(repeated.rows(), Some(&repeated), &mut rng)?)?;
                    normflow::engine::trim_thread_cache(STORE_BYTES);
                }
                Ok(())
            })
        }
    }
}
