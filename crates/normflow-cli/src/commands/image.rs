//! `normflow image`: Glow on 8-bit images from IDX files — train, evaluate in bits per
//! dimension, sample a grid.

use std::path::Path;
use std::time::Instant;

use normflow::bijection::{Dequantize, ImageShape};
use normflow::data::{read_idx, Format, TableWriter};
use normflow::flows::GlowConfig;
use normflow::train::{fit, resume_fit, CheckpointConfig, FitConfig};
use normflow::{Flow, Matrix, Rng};
use serde_json::json;

use super::{print_json, CliError};
use crate::cli::{ImageCommand, ImageEvalArgs, ImageSampleArgs, ImageTrainArgs};
use crate::progress::TrainingBar;

/// Key of a model's image shape in its metadata.
const IMAGE_SHAPE_KEY: &str = "image_shape";

pub fn run(c: ImageCommand) -> Result<(), CliError> {
    match c {
        ImageCommand::Train(a) => train(a),
        ImageCommand::Eval(a) => eval(a),
        ImageCommand::Sample(a) => sample(a),
    }
}

/// The images of an IDX file and their shape (one channel: IDX images are `[N, H, W]`).
fn read_images(path: &Path) -> Result<(Matrix, ImageShape), CliError> {
    let idx = read_idx(path)?;
    match idx.item_shape[..] {
        [height, width] => Ok((idx.data, ImageShape { channels: 1, height, width })),
        [channels, height, width] => Ok((idx.data, ImageShape { channels, height, width })),
        _ => Err(CliError::Usage(format!(
            "{}: items of shape {:?} are not images (expected [height, width] or [channels, height, width])",
            path.display(),
            idx.item_shape
        ))),
    }
}

/// The image shape a model was trained on.
fn model_shape(flow: &Flow, path: &Path) -> Result<ImageShape, CliError> {
    let v = flow
        .meta
        .extra
        .get(IMAGE_SHAPE_KEY)
        .ok_or_else(|| CliError::Usage(format!("{}: not an image model (train one with `normflow image train`)", path.display())))?;
    serde_json::from_value(v.clone()).map_err(|e| CliError::Usage(format!("{}: damaged image shape: {e}", path.display())))
}

/// Where `image train -o OUTPUT` keeps its checkpoint: `OUTPUT` with `.checkpoint` before the
/// extension (`glow.safetensors` → `glow.checkpoint.safetensors`).
fn checkpoint_path(output: &Path) -> std::path::PathBuf {
    let stem = output.file_stem().map_or_else(|| "model".into(), |s| s.to_string_lossy().into_owned());
    let ext = output.extension().map_or_else(|| "safetensors".into(), |e| e.to_string_lossy().into_owned());
    output.with_file_name(format!("{stem}.checkpoint.{ext}"))
}

/// Bits per dimension of a mean NLL in nats over images of `pixels` values.
fn bits_per_dim(nll: f64, pixels: usize) -> f64 {
    nll / (pixels as f64 * std::f64::consts::LN_2)
}

fn train(a: ImageTrainArgs) -> Result<(), CliError> {
    if a.output.is_dir() {
        return Err(CliError::Usage(format!("{}: is a directory; give a model file path", a.output.display())));
    }
    if a.minutes.is_some_and(|m| !(m > 0.0 && m.is_finite())) {
        return Err(CliError::Usage("--minutes must be positive".into()));
    }
    if !(a.checkpoint_minutes >= 0.0 && a.checkpoint_minutes.is_finite()) {
        return Err(CliError::Usage("--checkpoint-minutes must be at least 0".into()));
    }
    let checkpoint_path = checkpoint_path(&a.output);
    if a.resume && !checkpoint_path.exists() {
        return Err(CliError::Usage(format!(
            "--resume: no checkpoint at {} (it is written beside the output while training)",
            checkpoint_path.display()
        )));
    }
    let (images, shape) = read_images(&a.data)?;
    let glow = GlowConfig::new(shape).with_levels(a.levels).with_steps(a.steps).with_hidden(a.hidden).with_additive(a.additive);
    let mut flow =
        glow.init(&mut Rng::new(a.seed))?.with_data_layer(Box::new(Dequantize::new(shape.len(), (0..shape.len()).collect())?))?;
    flow.meta.name = "glow".into();
    flow.meta.extra.insert(IMAGE_SHAPE_KEY.into(), json!(shape));
    if a.resume {
        let saved = Flow::load(&checkpoint_path)?;
        if saved.transform().spec() != flow.transform().spec() || model_shape(&saved, &checkpoint_path)? != shape {
            return Err(CliError::Usage(format!(
                "{}: the checkpoint holds another architecture or image shape; resume with the flags that started the run",
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
        max_seconds: a.minutes.map(|m| m * 60.0),
        checkpoint: (a.checkpoint_minutes > 0.0)
            .then(|| CheckpointConfig { path: checkpoint_path.clone(), every_seconds: a.checkpoint_minutes * 60.0 }),
        ..FitConfig::default()
    };
    let bar = TrainingBar::new(a.quiet);
    let started = Instant::now();
    let result = if a.resume {
        resume_fit(&checkpoint_path, &images, None, &config, &mut |p| bar.update(p))
    } else {
        fit(flow, &images, None, &config, &mut |p| bar.update(p))
    };
    bar.finish();
    let (flow, history) = result?;
    flow.save(&a.output)?;
    let s = &history.summary;
    let (bpd, rate) = (bits_per_dim(s.best_val_nll, shape.len()), (s.steps * config.batch_size) as f64 / started.elapsed().as_secs_f64());
    if a.json {
        print_json(&json!({
            "model": a.output, "flow": "glow", "image": shape, "params": flow.num_params(), "steps": s.steps,
            "stopped": s.stopped, "best_val_bits_per_dim": bpd, "images_per_second": rate, "seconds": s.seconds,
        }))
    } else {
        eprintln!(
            "trained glow ({} params) on {} images for {} steps ({}, {rate:.0} images/s): best validation {bpd:.4} bits/dim; saved {}",
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
    let started = Instant::now();
    let x = flow.dequantize_rows(&images, &mut Rng::new(0))?;
    let lp = flow.log_prob(&x, None)?;
    let n = lp.len() as f64;
    let nll = -lp.iter().map(|&v| v as f64).sum::<f64>() / n;
    let var = lp.iter().map(|&v| (-(v as f64) - nll).powi(2)).sum::<f64>() / (n - 1.0).max(1.0);
    let (bpd, bpd_stderr) = (bits_per_dim(nll, shape.len()), bits_per_dim((var / n).sqrt(), shape.len()));
    let seconds = started.elapsed().as_secs_f64();
    if a.json {
        print_json(&json!({ "bits_per_dim": bpd, "bpd_stderr": bpd_stderr, "images": lp.len(), "seconds": seconds }))
    } else {
        println!("images        {}", lp.len());
        println!("bits/dim      {bpd:.4} ± {bpd_stderr:.4} (mean ± standard error; {seconds:.1} s)");
        Ok(())
    }
}

fn sample(a: ImageSampleArgs) -> Result<(), CliError> {
    let format = match a.output.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
        Some("png") => None,
        Some("npy") => Some(Format::Npy),
        Some("csv") | None => Some(Format::Csv),
        Some(other) => {
            return Err(CliError::Usage(format!(
                "{}: cannot write '.{other}' files; name the output .png, .npy or .csv",
                a.output.display()
            )))
        }
    };
    if a.num == 0 || a.num > 10_000 {
        return Err(CliError::Usage("-n must be in 1..=10000 images".into()));
    }
    let flow = Flow::load(&a.model)?;
    let shape = model_shape(&flow, &a.model)?;
    let x = flow.sample_at_temperature(a.num, a.temperature, None, &mut Rng::new(a.seed))?;
    // Pixels: the dequantised values floored back to 0..=255 (a sample never leaves that range).
    let pixels = Matrix::from_vec(
        x.rows(),
        x.cols(),
        x.as_slice().iter().map(|v| if v.is_finite() { v.floor().clamp(0.0, 255.0) } else { 0.0 }).collect(),
    );
    match format {
        None => write_grid(&a.output, &pixels, shape),
        Some(f) => Ok(normflow::io::write_atomic(&a.output, |w| -> Result<(), CliError> {
            TableWriter::new(w, f, pixels.rows(), pixels.cols(), None)?.write(&pixels)?;
            Ok(())
        })?),
    }
}

/// The images as a square-ish grid in one PNG (grayscale for one channel, RGB for three, the
/// first channel otherwise), one pixel of white space between images.
fn write_grid(path: &Path, images: &Matrix, shape: ImageShape) -> Result<(), CliError> {
    let n = images.rows();
    let cols = (n as f64).sqrt().ceil() as usize;
    let rows = n.div_ceil(cols);
    let (h, w) = (shape.height, shape.width);
    let (gw, gh) = (cols * (w + 1) + 1, rows * (h + 1) + 1);
    let mut rgb = vec![255u8; gw * gh * 3];
    for k in 0..n {
        let (top, left) = ((k / cols) * (h + 1) + 1, (k % cols) * (w + 1) + 1);
        let image = images.row(k);
        for y in 0..h {
            for x in 0..w {
                let value = |c: usize| image[(c.min(shape.channels - 1) * h + y) * w + x] as u8;
                let px = if shape.channels == 3 { [value(0), value(1), value(2)] } else { [value(0); 3] };
                let at = ((top + y) * gw + left + x) * 3;
                rgb[at..at + 3].copy_from_slice(&px);
            }
        }
    }
    normflow::io::write_atomic(path, |out| -> Result<(), CliError> {
        use image::ImageEncoder;
        image::codecs::png::PngEncoder::new(out)
            .write_image(&rgb, gw as u32, gh as u32, image::ColorType::Rgb8)
            .map_err(|e| CliError::Usage(format!("{}: cannot write the PNG: {e}", path.display())))
    })
}
