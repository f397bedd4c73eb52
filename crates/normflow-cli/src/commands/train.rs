//! `normflow train`.

use normflow::bijection::{Bounds, Dequantize, Interval};
use normflow::data::Table;
use normflow::data::{read_table, CsvOptions};
use normflow::flows::{fit_flow_matching, Coupling, FlowMatchingConfig, MafConfig, NsfConfig, RealNvpConfig, TimeSampling};
use normflow::ode::Solver;
use normflow::train::{fit, scott_factor, FitConfig, History, LrSchedule};
use normflow::{Flow, Rng};
use serde_json::json;

use super::{print_json, CliError};
use crate::cli::{FlowKind, Smoothing, TrainArgs};
use crate::input::CONTEXT_COLUMNS_KEY;
use crate::ode_flags::DEFAULT_RTOL;
use crate::progress::TrainingBar;

/// Applies the flags every preset shares to a preset configuration.
macro_rules! with_shared_flags {
    ($config:expr, $a:expr, $context_dim:expr) => {
        $config
            .with_layers($a.layers)
            .with_hidden($a.hidden.clone())
            .with_context($context_dim)
            .with_lu_linear($a.lu_linear)
            .with_batch_norm($a.batch_norm)
            .with_standardize(!$a.no_standardize)
            .with_whiten(!$a.no_whiten)
    };
}

/// Builds the untrained flow the flags describe.
pub(crate) fn build_flow(a: &TrainArgs, dim: usize, context_dim: usize) -> Result<Flow, CliError> {
    let mut rng = Rng::new(a.seed);
    Ok(match a.flow {
        FlowKind::Realnvp => with_shared_flags!(RealNvpConfig::new(dim), a, context_dim).init(&mut rng)?,
        FlowKind::Maf => with_shared_flags!(MafConfig::new(dim), a, context_dim).init(&mut rng)?,
        FlowKind::Nsf | FlowKind::NsfAr => with_shared_flags!(NsfConfig::new(dim), a, context_dim)
            .with_residual_blocks(a.residual_blocks)
            .with_bins(a.bins)
            .with_bound(a.tail_bound)
            .with_autoregressive(a.flow == FlowKind::NsfAr)
            .init(&mut rng)?,
        FlowKind::Fm => return Err(CliError::Usage("a continuous flow is built by flow matching, not here".into())),
    })
}

/// A data column by header name or 1-based position.
fn data_column(sel: &str, header: Option<&[String]>, dim: usize) -> Result<usize, CliError> {
    if let Some(i) = header.and_then(|h| h.iter().position(|c| c == sel)) {
        return Ok(i);
    }
    match sel.parse::<usize>() {
        Ok(k) if (1..=dim).contains(&k) => Ok(k - 1),
        _ => Err(CliError::Usage(format!("--dequantize: no data column '{sel}'"))),
    }
}

/// Parses `--bounds`: one `lo:hi` or `-` per data column.
fn parse_bounds(spec: &[String], dim: usize) -> Result<Vec<Option<Interval>>, CliError> {
    if spec.len() != dim {
        return Err(CliError::Usage(format!(
            "--bounds has {} entries, the data has {dim} columns (use '-' for an unbounded column)",
            spec.len()
        )));
    }
    spec.iter()
        .enumerate()
        .map(|(j, s)| {
            if s.trim() == "-" {
                return Ok(None);
            }
            let bad = || CliError::Usage(format!("--bounds entry {} ('{s}') is not lo:hi with lo < hi, or '-'", j + 1));
            let (lo, hi) = s.split_once(':').ok_or_else(bad)?;
            let (lo, hi): (f32, f32) = (lo.trim().parse().map_err(|_| bad())?, hi.trim().parse().map_err(|_| bad())?);
            if !(lo.is_finite() && hi.is_finite() && lo < hi) {
                return Err(bad());
            }
            Ok(Some(Interval { lo, hi }))
        })
        .collect()
}

/// Rows to train on: the data columns and, for a conditional model, the context columns.
pub(crate) struct TrainingRows {
    pub data: Table,
    pub context: Option<Table>,
}

/// Reads the training file as `--columns` / `--context-columns` say, dropping `also_drop`
/// (e.g. a label column) from the data columns.
pub(crate) fn read_training_rows(a: &TrainArgs, also_drop: &[String]) -> Result<TrainingRows, CliError> {
    if a.output.is_dir() {
        return Err(CliError::Usage(format!("{}: is a directory; give a model file path", a.output.display())));
    }
    let mut drop = a.context_columns.clone().unwrap_or_default();
    drop.extend_from_slice(also_drop);
    let data = read_table(&a.data, &CsvOptions { columns: a.columns.clone(), drop })?;
    let context = match &a.context_columns {
        Some(c) => Some(read_table(&a.data, &CsvOptions { columns: Some(c.clone()), ..Default::default() })?),
        None => None,
    };
    Ok(TrainingRows { data, context })
}

/// Builds the flow the flags describe and fits it to `rows` (with a progress bar); without
/// `--smoothing` the fit smooths as `default_smoothing` says.
pub(crate) fn fit_rows(a: &TrainArgs, rows: &TrainingRows, default_smoothing: Smoothing) -> Result<(Flow, History), CliError> {
    let (table, context) = (&rows.data, &rows.context);
    let dim = table.data.cols();
    if a.ot && a.flow != FlowKind::Fm {
        return Err(CliError::Usage("--ot is for continuous flows (--flow fm)".into()));
    }
    if a.time_sampling != TimeSampling::Uniform && a.flow != FlowKind::Fm {
        return Err(CliError::Usage("--time-sampling is for continuous flows (--flow fm)".into()));
    }
    let dequantized = match &a.dequantize {
        Some(cols) => cols.iter().map(|c| data_column(c, table.columns.as_deref(), dim)).collect::<Result<Vec<_>, _>>()?,
        None if a.no_dequantize => Vec::new(),
        None => {
            let found = normflow::data::integer_columns(&table.data);
            if !found.is_empty() && !a.quiet && !a.json {
                let names: Vec<String> =
                    found.iter().map(|&j| table.columns.as_ref().map_or_else(|| (j + 1).to_string(), |c| c[j].clone())).collect();
                eprintln!("dequantising integer-valued columns {} (--no-dequantize to treat them as continuous)", names.join(", "));
            }
            found
        }
    };
    let bar = TrainingBar::new(a.quiet);
    let result = if a.flow == FlowKind::Fm {
        fit_continuous(a, rows, dequantized, &bar)
    } else {
        fit_discrete(a, rows, dequantized, default_smoothing, &bar)
    };
    bar.finish();
    let (mut flow, history) = result?;
    flow.meta.columns = table.columns.clone();
    if let Some(c) = context {
        let names = c.columns.clone().unwrap_or_else(|| a.context_columns.clone().unwrap_or_default());
        flow.meta.extra.insert(CONTEXT_COLUMNS_KEY.into(), json!(names));
    }
    Ok((flow, history))
}

/// Fits one of the discrete flows (coupling, autoregressive, spline) by maximum likelihood.
fn fit_discrete(
    a: &TrainArgs,
    rows: &TrainingRows,
    dequantized: Vec<usize>,
    default_smoothing: Smoothing,
    bar: &TrainingBar,
) -> Result<(Flow, History), CliError> {
    let (table, context) = (&rows.data, &rows.context);
    let dim = table.data.cols();
    if a.ode.chosen()?.is_some() {
        return Err(CliError::Usage("--solver, --steps and --rtol are for continuous flows (--flow fm)".into()));
    }
    let mut flow = build_flow(a, dim, context.as_ref().map_or(0, |c| c.data.cols()))?;
    if let Some(spec) = &a.bounds {
        let bounds = parse_bounds(spec, dim)?;
        flow = flow.with_data_layer(Box::new(Bounds::new(bounds)?))?;
    }
    if !dequantized.is_empty() {
        flow = flow.with_data_layer(Box::new(Dequantize::new(dim, dequantized)?))?;
    }
    let config = FitConfig {
        lr: a.lr,
        batch_size: a.batch_size,
        val_frac: a.val_frac,
        max_epochs: a.epochs,
        max_steps: a.max_steps,
        patience: (a.patience > 0).then_some(a.patience),
        schedule: if a.cosine { LrSchedule::Cosine } else { LrSchedule::Constant },
        seed: a.seed,
        // Noise could carry a bounded column past its bounds: no default smoothing with --bounds.
        smoothing: match a.smoothing.unwrap_or(if a.bounds.is_some() { Smoothing::Factor(0.0) } else { default_smoothing }) {
            Smoothing::Auto => Some(scott_factor(table.data.rows(), dim)),
            Smoothing::Factor(h) => Some(h),
        },
        ..FitConfig::default()
    };
    fit(flow, &table.data, context.as_ref().map(|c| &c.data), &config, &mut |p| bar.update(p)).map_err(|e| training_error(a, table, e))
}

/// A training error for the user: a constant column is named, with how to drop it.
fn training_error(a: &TrainArgs, table: &Table, e: normflow::Error) -> CliError {
    match e {
        normflow::Error::ConstantColumn { column } => CliError::Usage(format!(
            "{}: column {column}{} is constant in the training split; drop it with --columns",
            a.data.display(),
            table.columns.as_ref().map(|c| format!(" ('{}')", c[column - 1])).unwrap_or_default()
        )),
        other => other.into(),
    }
}

/// Fits a continuous flow (`--flow fm`) by flow matching: `--epochs` (or `--max-steps`) sets
/// the steps, `--hidden` the velocity field, the solver flags how its ODE is solved.
fn fit_continuous(a: &TrainArgs, rows: &TrainingRows, dequantized: Vec<usize>, bar: &TrainingBar) -> Result<(Flow, History), CliError> {
    let n = rows.data.data.rows();
    let bounds = a.bounds.as_ref().map(|spec| parse_bounds(spec, rows.data.data.cols())).transpose()?.unwrap_or_default();
    let train_rows = n - ((n as f64) * a.val_frac).round() as usize;
    let config = FlowMatchingConfig {
        hidden: a.hidden.clone(),
        steps: a.max_steps.unwrap_or(a.epochs * train_rows.max(1).div_ceil(a.batch_size.max(1))),
        batch_size: a.batch_size,
        lr: a.lr,
        seed: a.seed,
        coupling: if a.ot { Coupling::MinibatchOt } else { Coupling::Independent },
        time_sampling: a.time_sampling,
        val_frac: a.val_frac,
        dequantize: dequantized,
        bounds,
        ..FlowMatchingConfig::default()
    };
    let solver = a.ode.chosen()?.unwrap_or(Solver::adaptive(DEFAULT_RTOL));
    let context = rows.context.as_ref().map(|c| &c.data);
    fit_flow_matching(&rows.data.data, context, &config, solver, &mut |p| bar.update(p)).map_err(|e| training_error(a, &rows.data, e))
}

pub fn run(a: TrainArgs) -> Result<(), CliError> {
    let rows = read_training_rows(&a, &[])?;
    let dim = rows.data.data.cols();
    let (flow, history) = fit_rows(&a, &rows, Smoothing::Factor(0.0))?;
    flow.save(&a.output)?;
    let s = &history.summary;
    if a.json {
        print_json(&json!({
            "model": a.output,
            "flow": flow.meta.name,
            "dim": dim,
            "params": flow.num_params(),
            "steps": s.steps,
            "epochs": s.epochs,
            "train_rows": s.train_rows,
            "val_rows": s.val_rows,
            "best_val_nll": s.best_val_nll,
            "final_train_nll": s.final_train_nll,
            "stopped": s.stopped,
            "seconds": s.seconds,
        }))?;
    } else {
        let which = if s.val_rows > 0 { "validation" } else { "training (no validation rows)" };
        eprintln!(
            "trained {} ({} params) on {} rows for {} steps ({}): best {which} NLL {:.4} nats; saved {}",
            flow.meta.name,
            flow.num_params(),
            s.train_rows,
            s.steps,
            s.stopped.replace('_', " "),
            s.best_val_nll,
            a.output.display()
        );
    }
    Ok(())
}
