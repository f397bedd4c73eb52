//! `normflow image encode / decode / interpolate`: images to latent codes and back.
//!
//! Encoding takes each pixel at the centre of its dequantisation bin (value + 0.5), so that
//! decoding the code and flooring gives the image back exactly.

use normflow::data::read_table;
use normflow::{Flow, Matrix};

use super::image::{model_classes, model_shape};
use super::image_files::{output_format, read_images, write_pixels, write_rows};
use super::CliError;
use crate::cli::{ImageDecodeArgs, ImageEncodeArgs, ImageInterpolateArgs};

/// Most images a grid row or a decode may hold.
const MAX_IMAGES: usize = 10_000;

/// The model and the images of `data`, checked to have the model's shape, at bin centres.
fn model_and_images(model: &std::path::Path, data: &std::path::Path) -> Result<(Flow, Matrix, normflow::bijection::ImageShape), CliError> {
    let flow = Flow::load(model)?;
    let shape = model_shape(&flow, model)?;
    refuse_class_conditional(&flow, model)?;
    let (images, found) = read_images(data)?;
    if found != shape {
        return Err(CliError::Usage(format!("{}: images of {found:?}, the model was trained on {shape:?}", data.display())));
    }
    let centred = Matrix::from_vec(images.rows(), images.cols(), images.as_slice().iter().map(|v| v + 0.5).collect());
    Ok((flow, centred, shape))
}

/// Latent codes of a class-conditional model depend on the class; these commands do not take
/// labels yet.
fn refuse_class_conditional(flow: &Flow, model: &std::path::Path) -> Result<(), CliError> {
    if model_classes(flow) > 0 {
        return Err(CliError::Usage(format!(
            "{}: a class-conditional model; encode, decode and interpolate work on unconditional image models",
            model.display()
        )));
    }
    Ok(())
}

pub(crate) fn encode(a: ImageEncodeArgs) -> Result<(), CliError> {
    let format = output_format(&a.output, false)?.expect("no PNG for latents");
    let (flow, x, _) = model_and_images(&a.model, &a.data)?;
    let z = flow.encode(&x, None)?;
    write_rows(&a.output, format, &z)
}

pub(crate) fn decode(a: ImageDecodeArgs) -> Result<(), CliError> {
    let format = output_format(&a.output, true)?;
    let flow = Flow::load(&a.model)?;
    let shape = model_shape(&flow, &a.model)?;
    refuse_class_conditional(&flow, &a.model)?;
    let z = read_table(&a.latents, &Default::default())?.data;
    if z.cols() != shape.len() {
        return Err(CliError::Usage(format!(
            "{}: rows of {} values, the model's latent codes have {} ({shape:?})",
            a.latents.display(),
            z.cols(),
            shape.len()
        )));
    }
    if z.rows() > MAX_IMAGES {
        return Err(CliError::Usage(format!("{}: {} rows; decode at most {MAX_IMAGES} at a time", a.latents.display(), z.rows())));
    }
    let x = flow.decode(&z, None)?;
    write_pixels(&a.output, format, &x, shape, None)
}

pub(crate) fn interpolate(a: ImageInterpolateArgs) -> Result<(), CliError> {
    if output_format(&a.output, true)?.is_some() {
        return Err(CliError::Usage(format!("{}: an interpolation is a grid; name the output .png", a.output.display())));
    }
    if !(2..=64).contains(&a.steps) {
        return Err(CliError::Usage("--steps must be in 2..=64 images per row".into()));
    }
    let (flow, x, shape) = model_and_images(&a.model, &a.data)?;
    let pairs = a
        .pairs
        .iter()
        .map(|p| {
            let bad = || CliError::Usage(format!("--pairs entry '{p}' is not FROM:TO with image indices below {}", x.rows()));
            let (from, to) = p.split_once(':').ok_or_else(bad)?;
            let (from, to): (usize, usize) = (from.trim().parse().map_err(|_| bad())?, to.trim().parse().map_err(|_| bad())?);
            if from >= x.rows() || to >= x.rows() {
                return Err(bad());
            }
            Ok((from, to))
        })
        .collect::<Result<Vec<_>, _>>()?;
    if pairs.is_empty() || pairs.len() * a.steps > MAX_IMAGES {
        return Err(CliError::Usage(format!("--pairs: give 1 to {} pairs", MAX_IMAGES / a.steps)));
    }
    let ends: Vec<usize> = pairs.iter().flat_map(|&(f, t)| [f, t]).collect();
    let z = flow.encode(&x.select_rows(&ends), None)?;
    let d = z.cols();
    let mut path = Vec::with_capacity(pairs.len() * a.steps * d);
    for k in 0..pairs.len() {
        let (za, zb) = (z.row(2 * k), z.row(2 * k + 1));
        for s in 0..a.steps {
            let t = s as f32 / (a.steps - 1) as f32;
            path.extend(za.iter().zip(zb).map(|(u, v)| (1.0 - t) * u + t * v));
        }
    }
    let images = flow.decode(&Matrix::from_vec(pairs.len() * a.steps, d, path), None)?;
    write_pixels(&a.output, None, &images, shape, Some(a.steps))
}
