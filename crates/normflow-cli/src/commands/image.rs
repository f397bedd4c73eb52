//! `normflow image`: Glow on 8-bit images from IDX files — train, evaluate in bits per
//! dimension, sample a grid.

use std::path::Path;
use std::time::Instant;

use normflow::bijection::{Dequantize, ImageShape};
use normflow::flows::{GlowConfig, MultiscaleRealNvpConfig};
use normflow::train::{fit, resume_fit, FitConfig, LrSchedule};
use normflow::{Flow, Matrix, Rng};
use serde_json::json;

use super::checkpoint;
use super::image_files::{one_hot, output_format, read_images, read_labels, write_pixels};
use super::{print_json, CliError};
use crate::cli::{ImageCommand, ImageEvalArgs, ImageFlowKind, ImageSampleArgs, ImageTrainArgs};
use crate::progress::TrainingBar;

/// Key of a model's image shape in its metadata.
const IMAGE_SHAPE_KEY: &str = "image_shape";
/// Key of a class-conditional model's number of classes in its metadata.
const IMAGE_CLASSES_KEY: &str = "image_classes";

/// The number of classes a model is conditioned on (0: unconditional).
pub(crate) fn model_classes(flow: &Flow) -> usize {
    flow.meta.extra.get(IMAGE_CLASSES_KEY).and_then(|v| v.as_u64()).unwrap_or(0) as usize
}

/// The one-hot context of `labels` for a model of `classes` classes (none for an
/// unconditional model, which refuses labels).
fn class_context(classes: usize, labels: Option<&Path>, images: usize, model: &Path) -> Result<Option<Matrix>, CliError> {
    match (classes, labels) {
        (0, None) => Ok(None),
        (0, Some(_)) => Err(CliError::Usage(format!("{}: not a class-conditional model; drop --labels", model.display()))),
        (_, None) => Err(CliError::Usage(format!("{}: a class-conditional model; give the images' --labels", model.display()))),
        (k, Some(path)) => {
            let labels = read_labels(path, images)?;
            if let Some(&l) = labels.iter().find(|&&l| l >= k) {
                return Err(CliError::Usage(format!("{}: label {l}, the model knows classes 0..{k}", path.display())));
            }
            Ok(Some(one_hot(&labels, k)))
        }
    }
}

pub fn run(c: ImageCommand) -> Result<(), CliError> {
    match c {
        ImageCommand::Train(a) => train(a),
        ImageCommand::Eval(a) => eval(a),
        ImageCommand::Sample(a) => sample(a),
        ImageCommand::Encode(a) => super::image_latent::encode(a),
        ImageCommand::Decode(a) => super::image_latent::decode(a),
        ImageCommand::Interpolate(a) => super::image_latent::interpolate(a),
    }
}

/// The image shape a model was trained on.
pub(crate) fn model_shape(flow: &Flow, path: &Path) -> Result<ImageShape, CliError> {
    let v = flow
        .meta
        .extra
        .get(IMAGE_SHAPE_KEY)
        .ok_or_else(|| CliError::Usage(format!("{}: not an image model (train one with `normflow image train`)", path.display())))?;
    serde_json::from_value(v.clone()).map_err(|e| CliError::Usage(format!("{}: damaged image shape: {e}", path.display())))
}

/// Applies the flags both image presets share.
macro_rules! with_image_flags {
    ($config:expr, $a:expr, $classes:expr) => {
        $config
            .with_levels($a.levels)
            .with_steps($a.steps)
            .with_hidden($a.hidden)
            .with_additive($a.additive)
            .with_logit($a.logit)
            .with_context($classes)
    };
}

/// Bits per dimension of a mean NLL in nats over images of `pixels` values.
fn bits_per_dim(nll: f64, pixels: usize) -> f64 {
    nll / (pixels as f64 * std::f64::consts::LN_2)
}

fn train(a: ImageTrainArgs) -> Result<(), CliError> {
    if a.output.is_dir() {
        return Err(CliError::Usage(format!("{}: is a directory; give a model file path", a.output.display())));
    }
    let max_seconds = checkpoint::time_limit(a.minutes)?;
    let checkpoint_path = checkpoint::prepare(&a.checkpoint, &a.output)?;
    let (images, shape) = read_images(&a.data)?;
    let labels = a.labels.as_deref().map(|p| read_labels(p, images.rows())).transpose()?;
    let classes = labels.as_ref().map_or(0, |l| l.iter().max().map_or(0, |m| m + 1));
    let context = labels.as_ref().map(|l| one_hot(l, classes));
    if a.flow == ImageFlowKind::Glow && a.residual_blocks.is_some() {
        return Err(CliError::Usage("--residual-blocks is for --flow realnvp (Glow's coupling network is 3×3 → 1×1 → 3×3)".into()));
    }
    let rng = &mut Rng::new(a.seed);
    let flow = match a.flow {
        ImageFlowKind::Glow => with_image_flags!(GlowConfig::new(shape), a, classes).init(rng)?,
        ImageFlowKind::Realnvp => with_image_flags!(MultiscaleRealNvpConfig::new(shape), a, classes)
            .with_residual_blocks(a.residual_blocks.unwrap_or(2))
            .init(rng)?,
    };
    let name = flow.meta.name.clone();
    let mut flow = flow.with_data_layer(Box::new(Dequantize::new(shape.len(), (0..shape.len()).collect())?))?;
    flow.meta.name = name;
    flow.meta.extra.insert(IMAGE_SHAPE_KEY.into(), json!(shape));
    if classes > 0 {
        flow.meta.extra.insert(IMAGE_CLASSES_KEY.into(), json!(classes));
    }
    if a.checkpoint.resume {
        let saved = checkpoint::check_same_architecture(&checkpoint_path, &flow, "architecture")?;
        if model_shape(&saved, &checkpoint_path)? != shape {
            return Err(CliError::Usage(format!(
                "{}: the checkpoint holds another image shape; resume with the flags that started the run",
                checkpoint_path.display()
            )));
        }
    }
    let config = FitConfig {
        lr: a.lr,
        batch_size: a.batch_size,
        val_frac: a.val_frac,
        max_epochs: a.epochs,
        max_steps: a.max_steps,
        eval_every: Some(a.eval_every.max(1)),
        seed: a.seed,
        min_gain_z: None,
        init_rows: Some(2048),
        max_seconds,
        schedule: if a.cosine { LrSchedule::Cosine } else { LrSchedule::Constant },
        stop_on_divergence: true,
        checkpoint: checkpoint::config(&a.checkpoint, &checkpoint_path),
        ..FitConfig::default()
    };
    let bar = TrainingBar::for_images(a.quiet, shape.len(), config.batch_size, config.max_seconds);
    let started = Instant::now();
    // The step this invocation started from (past 0 after --resume), for its rate.
    let mut first_step = None;
    let mut report = |p: &normflow::train::FitProgress| {
        first_step.get_or_insert(p.step.saturating_sub(1));
        bar.update(p)
    };
    let result = if a.checkpoint.resume {
        resume_fit(&checkpoint_path, &images, context.as_ref(), &config, &mut report)
    } else {
        fit(flow, &images, context.as_ref(), &config, &mut report)
    };
    bar.finish();
    let (flow, history) = result?;
    flow.save(&a.output)?;
    let s = &history.summary;
    let steps_here = s.steps - first_step.unwrap_or(0).min(s.steps);
    let (bpd, rate) =
        (bits_per_dim(s.best_val_nll, shape.len()), (steps_here * config.batch_size) as f64 / started.elapsed().as_secs_f64());
    // The optimisation steps alone (all parts of a resumed run), without evaluations and setup.
    let step_rate = (s.steps * config.batch_size) as f64 / s.step_seconds.max(f64::MIN_POSITIVE);
    if a.json {
        print_json(&json!({
            "model": a.output, "flow": flow.meta.name, "image": shape, "params": flow.num_params(), "steps": s.steps,
            "stopped": s.stopped, "best_val_bits_per_dim": bpd, "images_per_second": rate,
            "step_images_per_second": step_rate, "seconds": s.seconds, "step_seconds": s.step_seconds,
        }))
    } else {
        eprintln!(
            "trained {} ({} params) on {} images for {} steps ({}, {rate:.0} images/s, {step_rate:.0} in the steps alone): best validation {bpd:.4} bits/dim; saved {}",
            flow.meta.name,
            flow.num_params(),
            s.train_rows,
            s.steps,
            s.stopped.replace('_', " "),
            a.output.display()
        );
        Ok(())
    }
}

fn eval(a: ImageEvalArgs) -> Result<(), CliError> {
    let flow = Flow::load(&a.model)?;
    let shape = model_shape(&flow, &a.model)?;
    let (images, found) = read_images(&a.data)?;
    if found != shape {
        return Err(CliError::Usage(format!("{}: images of {found:?}, the model was trained on {shape:?}", a.data.display())));
    }
    let context = class_context(model_classes(&flow), a.labels.as_deref(), images.rows(), &a.model)?;
    let started = Instant::now();
    let x = flow.dequantize_rows(&images, &mut Rng::new(0))?;
    let lp = flow.log_prob(&x, context.as_ref())?;
    let n = lp.len() as f64;
    let nll = -lp.iter().map(|&v| v as f64).sum::<f64>() / n;
    let var = lp.iter().map(|&v| (-(v as f64) - nll).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
    let (bpd, bpd_stderr) = (bits_per_dim(nll, shape.len()), bits_per_dim((var / n).sqrt(), shape.len()));
    let seconds = started.elapsed().as_secs_f64();
    // The median and the worst image show a tail that the mean alone would hide (or be ruined by).
    let mut per_image: Vec<(f64, usize)> = lp.iter().enumerate().map(|(i, &v)| (bits_per_dim(-(v as f64), shape.len()), i)).collect();
    per_image.sort_by(|a, b| a.0.total_cmp(&b.0));
    let median = per_image.get(per_image.len() / 2).map_or(f64::NAN, |m| m.0);
    let (worst, worst_image) = per_image.last().copied().unwrap_or((f64::NAN, 0));
    if a.json {
        print_json(&json!({
            "bits_per_dim": bpd, "bpd_stderr": bpd_stderr, "median_bits_per_dim": median, "max_bits_per_dim": worst,
            "worst_image": worst_image, "images": lp.len(), "seconds": seconds,
        }))
    } else {
        println!("images        {}", lp.len());
        println!("bits/dim      {bpd:.4} ± {bpd_stderr:.4} (mean ± standard error; {seconds:.1} s)");
        println!("median        {median:.4}");
        println!("worst image   {worst:.4} (image {worst_image}, counted from 0)");
        Ok(())
    }
}

fn sample(a: ImageSampleArgs) -> Result<(), CliError> {
    let format = output_format(&a.output, true)?;
    if a.num == 0 || a.num > 10_000 {
        return Err(CliError::Usage("-n must be in 1..=10000 images".into()));
    }
    let flow = Flow::load(&a.model)?;
    let shape = model_shape(&flow, &a.model)?;
    let context = match (model_classes(&flow), a.class) {
        (0, None) => None,
        (0, Some(_)) => return Err(CliError::Usage(format!("{}: not a class-conditional model; drop --class", a.model.display()))),
        (k, Some(c)) if c >= k => return Err(CliError::Usage(format!("--class {c}: the model knows classes 0..{k}"))),
        (k, class) => Some(one_hot(&(0..a.num).map(|i| class.unwrap_or(i % k)).collect::<Vec<_>>(), k)),
    };
    let x = flow.sample_at_temperature(a.num, a.temperature, context.as_ref(), &mut Rng::new(a.seed))?;
    write_pixels(&a.output, format, &x, shape, None)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_uniform_model_scores_exactly_8_bits_per_dim() {
        // The uniform density on 8-bit pixels (dequantised to [0, 256)) gives each image of D
        // values an NLL of D·ln 256 nats.
        for d in [1, 784, 3072] {
            assert_eq!(bits_per_dim(d as f64 * 256f64.ln(), d), 8.0);
        }
    }
}
