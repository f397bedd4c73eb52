//! `normflow log-prob`, `encode` and `decode`: one output row per input row.

use normflow::data::read_table;
use normflow::data::CsvOptions;
use normflow::Matrix;

use super::CliError;
use crate::cli::MapArgs;
use crate::input::{load_model, read_for_model};
use crate::output::{numbered, write_rows};

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
    let flow = load_model(&a.model)?;
    let data_names = flow.meta.columns.clone().unwrap_or_else(|| numbered("x", flow.dim()));
    let (rows, header) = match mapping {
        Mapping::LogProb => {
            let t = read_for_model(&a.data, &flow, a.columns.as_deref())?;
            let lp = flow.log_prob(&t.data, None)?;
            (Matrix::from_vec(lp.len(), 1, lp), vec!["log_prob".to_string()])
        }
        Mapping::Encode => {
            let t = read_for_model(&a.data, &flow, a.columns.as_deref())?;
            (flow.encode(&t.data, None)?, numbered("z", flow.dim()))
        }
        Mapping::Decode => {
            let t = read_table(&a.data, &CsvOptions { columns: a.columns.clone(), ..Default::default() })?;
            if t.data.cols() != flow.dim() {
                return Err(CliError::Usage(format!(
                    "{}: has {} columns, the model's latent space has {}",
                    a.data.display(),
                    t.data.cols(),
                    flow.dim()
                )));
            }
            (flow.decode(&t.data, None)?, data_names)
        }
    };
    write_rows(a.output.as_deref(), &rows, &header)
}
