//! `normflow sample`.

use normflow::Rng;

use super::CliError;
use crate::cli::SampleArgs;
use crate::input::load_model;
use crate::output::{numbered, write_rows};

pub fn run(a: SampleArgs) -> Result<(), CliError> {
    let flow = load_model(&a.model)?;
    if flow.context_dim() > 0 {
        return Err(CliError::Usage(format!("{}: this model is conditional and needs a context", a.model.display())));
    }
    let rows = flow.sample(a.num, None, &mut Rng::new(a.seed))?;
    let header = flow.meta.columns.clone().unwrap_or_else(|| numbered("x", flow.dim()));
    write_rows(a.output.as_deref(), &rows, &header)
}
