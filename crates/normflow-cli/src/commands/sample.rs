//! `normflow sample`.

use normflow::data::{read_table, CsvOptions};
use normflow::Rng;

use super::CliError;
use crate::cli::SampleArgs;
use crate::input::{load_model, model_context_columns, read_context};
use crate::output::{numbered, write_rows};

pub fn run(a: SampleArgs) -> Result<(), CliError> {
    let flow = load_model(&a.model)?;
    let rows = match (&a.context, flow.context_dim()) {
        (None, 0) => flow.sample_discrete(a.num, None, &mut Rng::new(a.seed))?,
        (None, k) => {
            return Err(CliError::Usage(format!(
                "{}: the model is conditional on {k} context columns; give them with --context FILE",
                a.model.display()
            )))
        }
        (Some(_), 0) => return Err(CliError::Usage(format!("--context given, but {} is unconditional", a.model.display()))),
        (Some(path), k) => {
            // The model's context columns by name when the file has them, else all columns.
            let by_name = model_context_columns(&flow).and_then(|names| read_context(path, &flow, Some(&names)).ok().flatten());
            let context = match by_name {
                Some(c) => c,
                None => read_table(path, &CsvOptions::default())?.data,
            };
            if context.cols() != k {
                return Err(CliError::Usage(format!("{}: has {} columns, the model's context has {k}", path.display(), context.cols())));
            }
            // One block of `per_context` samples per context row, in row order.
            let idx: Vec<usize> = (0..context.rows()).flat_map(|i| std::iter::repeat_n(i, a.per_context)).collect();
            let repeated = context.select_rows(&idx);
            flow.sample_discrete(repeated.rows(), Some(&repeated), &mut Rng::new(a.seed))?
        }
    };
    let header = flow.meta.columns.clone().unwrap_or_else(|| numbered("x", flow.dim()));
    write_rows(a.output.as_deref(), &rows, &header)
}
