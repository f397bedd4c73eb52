//! Image sets in and out: IDX files (MNIST's format, plain or gzip), `.npy` arrays and folders
//! of PNG files in; PNG grids out. Every image set becomes one row of `C×H×W` pixel values
//! (0–255) per image.

use std::path::Path;

use normflow::bijection::ImageShape;
use normflow::data::{read_idx, read_npy_array, Format, TableWriter};
use normflow::Matrix;

use super::CliError;

/// Reads an image set: a folder of PNG files, an `.npy` array (`[N, H, W]`, `[N, C, H, W]` or
/// `[N, H, W, C]` with C of 1, 3 or 4 last; bytes or integer-valued floats in 0–255), or an IDX
/// file of unsigned bytes (`[N, H, W]` or `[N, C, H, W]`).
///
/// # Errors
/// A usage error naming the file for a set of another rank, pixels outside 0–255 or not
/// integers, PNG files of mixed sizes or colour types, or an empty folder.
pub(crate) fn read_images(path: &Path) -> Result<(Matrix, ImageShape), CliError> {
    if path.is_dir() {
        return read_png_folder(path);
    }
    let (data, dims) = if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("npy")) {
        let array = read_npy_array(path)?;
        (array.data, array.shape)
    } else {
        let idx = read_idx(path)?;
        let mut dims = vec![idx.data.rows()];
        dims.extend(&idx.item_shape);
        (idx.data.as_slice().to_vec(), dims)
    };
    let bad = |m: String| CliError::Usage(format!("{}: {m}", path.display()));
    let (n, shape, channels_last) = match dims[..] {
        [n, height, width] => (n, ImageShape { channels: 1, height, width }, false),
        [n, a, h, w] if matches!(w, 1 | 3 | 4) && !matches!(a, 1 | 3 | 4) => (n, ImageShape { channels: w, height: a, width: h }, true),
        [n, channels, height, width] => (n, ImageShape { channels, height, width }, false),
        _ => return Err(bad(format!("an array of shape {dims:?}, not images ([N, H, W], [N, C, H, W] or [N, H, W, C])"))),
    };
    if let Some(k) = data.iter().position(|v| !(0.0..=255.0).contains(v) || v.fract() != 0.0) {
        let per = shape.len();
        return Err(bad(format!("image {} holds {} at value {}: pixels must be integers in 0–255", k / per + 1, data[k], k % per + 1)));
    }
    let data = if channels_last { to_channels_first(&data, n, shape) } else { data };
    Ok((Matrix::from_vec(n, shape.len(), data), shape))
}

/// `[N, H, W, C]` values reordered as `[N, C, H, W]`.
fn to_channels_first(data: &[f32], n: usize, s: ImageShape) -> Vec<f32> {
    let mut out = vec![0.0; data.len()];
    for i in 0..n {
        for p in 0..s.pixels() {
            for c in 0..s.channels {
                out[i * s.len() + c * s.pixels() + p] = data[i * s.len() + p * s.channels + c];
            }
        }
    }
    out
}

/// The PNG files of a folder, in name order: 8-bit grayscale (one channel) or RGB (three).
fn read_png_folder(dir: &Path) -> Result<(Matrix, ImageShape), CliError> {
    let bad = |m: String| CliError::Usage(format!("{}: {m}", dir.display()));
    let mut files: Vec<_> = std::fs::read_dir(dir)
        .map_err(|e| bad(format!("cannot list the folder: {e}")))?
        .filter_map(|e| e.ok().map(|e| e.path()))
        .filter(|p| p.extension().is_some_and(|e| e.eq_ignore_ascii_case("png")))
        .collect();
    files.sort();
    if files.is_empty() {
        return Err(bad("the folder holds no .png files".into()));
    }
    let mut data = Vec::new();
    let mut shape: Option<ImageShape> = None;
    for file in &files {
        let img = image::open(file).map_err(|e| CliError::Usage(format!("{}: not a readable PNG image: {e}", file.display())))?;
        let (width, height) = (img.width() as usize, img.height() as usize);
        let (channels, pixels) = match img.color() {
            image::ColorType::L8 | image::ColorType::L16 | image::ColorType::La8 | image::ColorType::La16 => (1, img.to_luma8().into_raw()),
            _ => (3, img.to_rgb8().into_raw()),
        };
        let this = ImageShape { channels, height, width };
        match shape {
            None => shape = Some(this),
            Some(first) if first != this => {
                return Err(CliError::Usage(format!(
                    "{}: a {channels}-channel {width}×{height} image among {}-channel {}×{} ones: every image of a set must have one size and colour type",
                    file.display(),
                    first.channels,
                    first.width,
                    first.height
                )))
            }
            Some(_) => {}
        }
        // Interleaved HWC bytes to CHW values.
        for c in 0..channels {
            data.extend(pixels.iter().skip(c).step_by(channels).map(|&v| v as f32));
        }
    }
    let shape = shape.expect("at least one image");
    Ok((Matrix::from_vec(files.len(), shape.len(), data), shape))
}

/// The images as a grid in one PNG (grayscale for one channel, RGB for three, the first channel
/// otherwise), one pixel of white space between images; `columns` images a row (default: a
/// square-ish grid).
fn write_grid(path: &Path, images: &Matrix, shape: ImageShape, columns: Option<usize>) -> Result<(), CliError> {
    let n = images.rows();
    let cols = columns.unwrap_or_else(|| (n as f64).sqrt().ceil() as usize).max(1);
    let rows = n.div_ceil(cols);
    let (h, w) = (shape.height, shape.width);
    let (gw, gh) = (cols * (w + 1) + 1, rows * (h + 1) + 1);
    let mut rgb = vec![255u8; gw * gh * 3];
    for k in 0..n {
        let (top, left) = ((k / cols) * (h + 1) + 1, (k % cols) * (w + 1) + 1);
        let image = images.row(k);
        for y in 0..h {
            for x in 0..w {
                let value = |c: usize| image[(c.min(shape.channels - 1) * h + y) * w + x].clamp(0.0, 255.0) as u8;
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

/// How to write images to `path`: `None` for a PNG grid (when `png` allows it), else the table
/// format of `.npy` or `.csv` rows.
pub(crate) fn output_format(path: &Path, png: bool) -> Result<Option<Format>, CliError> {
    match path.extension().and_then(|e| e.to_str()).map(str::to_ascii_lowercase).as_deref() {
        Some("png") if png => Ok(None),
        Some("npy") => Ok(Some(Format::Npy)),
        Some("csv") | None => Ok(Some(Format::Csv)),
        Some(other) => {
            let allowed = if png { ".png, .npy or .csv" } else { ".npy or .csv" };
            Err(CliError::Usage(format!("{}: cannot write '.{other}' files; name the output {allowed}", path.display())))
        }
    }
}

/// Writes model outputs as pixels: the dequantised values floored back to 0–255 (a non-finite
/// value, which a flow should never give, becomes 0), as a PNG grid or table rows.
pub(crate) fn write_pixels(
    path: &Path,
    format: Option<Format>,
    x: &Matrix,
    shape: ImageShape,
    columns: Option<usize>,
) -> Result<(), CliError> {
    let pixels = Matrix::from_vec(
        x.rows(),
        x.cols(),
        x.as_slice().iter().map(|v| if v.is_finite() { v.floor().clamp(0.0, 255.0) } else { 0.0 }).collect(),
    );
    match format {
        None => write_grid(path, &pixels, shape, columns),
        Some(f) => write_rows(path, f, &pixels),
    }
}

/// Writes `x` as `.npy` or `.csv` rows, atomically.
pub(crate) fn write_rows(path: &Path, format: Format, x: &Matrix) -> Result<(), CliError> {
    normflow::io::write_atomic(path, |w| -> Result<(), CliError> {
        TableWriter::new(w, format, x.rows(), x.cols(), None)?.write(x)?;
        Ok(())
    })
}

/// Most classes a class-conditional image model may have.
pub(crate) const MAX_CLASSES: usize = 1000;

/// Reads one class label per image (an IDX label file or a 1-D `.npy` of integers
/// `0..MAX_CLASSES`), checking there are `images` of them.
pub(crate) fn read_labels(path: &Path, images: usize) -> Result<Vec<usize>, CliError> {
    let bad = |m: String| CliError::Usage(format!("{}: {m}", path.display()));
    let (values, dims) = if path.extension().is_some_and(|e| e.eq_ignore_ascii_case("npy")) {
        let a = read_npy_array(path)?;
        (a.data, a.shape)
    } else {
        let idx = read_idx(path)?;
        let mut dims = vec![idx.data.rows()];
        dims.extend(&idx.item_shape);
        (idx.data.as_slice().to_vec(), dims)
    };
    if dims.len() != 1 {
        return Err(bad(format!("labels must be one value per image (a 1-D array), got shape {dims:?}")));
    }
    if values.len() != images {
        return Err(bad(format!("{} labels for {images} images", values.len())));
    }
    values
        .iter()
        .enumerate()
        .map(|(i, &v)| {
            if v.fract() == 0.0 && (0.0..MAX_CLASSES as f32).contains(&v) {
                Ok(v as usize)
            } else {
                Err(bad(format!("label {} is {v}; labels are integers 0..{MAX_CLASSES}", i + 1)))
            }
        })
        .collect()
}

/// One-hot rows of `classes` columns.
pub(crate) fn one_hot(labels: &[usize], classes: usize) -> Matrix {
    let mut m = Matrix::zeros(labels.len(), classes);
    for (r, &l) in labels.iter().enumerate() {
        m.set(r, l, 1.0);
    }
    m
}
