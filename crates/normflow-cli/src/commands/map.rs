//! `normflow log-prob`, `encode` and `decode`: one output row per input row.

use normflow::data::read_table;
use normflow::data::CsvOptions;
use normflow::Matrix;

use super::CliError;
use crate::cli::MapArgs;
use crate::input::{context_names, read_context, read_for_model, Selection};
use crate::ode_flags::load_model_with;
use crate::output::{check_output, numbered, write_rows};

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
