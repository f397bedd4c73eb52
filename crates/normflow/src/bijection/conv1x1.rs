//! Glow's invertible 1×1 convolution (Kingma & Dhariwal 2018, arXiv:1807.03039, §3.2): one
//! learned `C×C` matrix applied to the channel vector of every pixel, LU-parametrised so that
//! its log-determinant is free: `H·W · log|det W|`.

use super::{BijectionSpec, Direction, ImageShape, LuLinear, Tape};
use crate::engine::{map_row_ranges_into, Matrix, Rng};
use crate::io::TensorSource;
use crate::{Bijection, Error, Result};

/// `x[:, p] = W z[:, p]` for every pixel `p` of `C×H×W` image rows, with `W = P L U` an
/// [`LuLinear`] map of the channels, starting as a random rotation ([`Conv1x1::rotation`], Glow's
/// choice) or as the reversal of the channel order ([`Conv1x1::new`]).
#[derive(Clone, Debug)]
pub struct Conv1x1 {
    shape: ImageShape,
    lu: LuLinear,
}

/// Images per worker at the least when the layout changes below run in parallel.
const MIN_IMAGES_PER_THREAD: usize = 4;

/// Image rows (`C×P` each) as one row per pixel (`C` values), image by image, the images
/// split over the workers.
fn to_pixels(x: &Matrix, shape: ImageShape) -> Matrix {
    let (c, p) = (shape.channels, shape.pixels());
    let mut out = Matrix::zeros(x.rows() * p, c);
    if c * p == 0 {
        return out;
    }
    map_row_ranges_into(x.rows(), MIN_IMAGES_PER_THREAD, c * p, Some(out.as_mut_slice()), |range, slot| {
        let slot = slot.expect("an output was given");
        for (n, block) in range.zip(slot.chunks_exact_mut(c * p)) {
            let image = x.row(n);
            for (ch, plane) in image.chunks_exact(p).enumerate() {
                for (px, &v) in plane.iter().enumerate() {
                    block[px * c + ch] = v;
                }
            }
        }
    });
    out
}

/// The inverse of [`to_pixels`].
fn from_pixels(m: &Matrix, shape: ImageShape) -> Matrix {
    let (c, p) = (shape.channels, shape.pixels());
    let images = m.rows() / p.max(1);
    let mut out = Matrix::zeros(images, c * p);
    if c * p == 0 {
        return out;
    }
    let src = m.as_slice();
    map_row_ranges_into(images, MIN_IMAGES_PER_THREAD, c * p, Some(out.as_mut_slice()), |range, slot| {
        let slot = slot.expect("an output was given");
        for (n, image) in range.zip(slot.chunks_exact_mut(c * p)) {
            let pixels = &src[n * c * p..(n + 1) * c * p];
            for (px, values) in pixels.chunks_exact(c).enumerate() {
                for (ch, &v) in values.iter().enumerate() {
                    image[ch * p + px] = v;
                }
            }
        }
    });
    out
}

/// The channel order reversed: the permutation of [`Conv1x1::new`].
fn reversal(channels: usize) -> Vec<usize> {
    (0..channels).rev().collect()
}

/// Per-pixel log-dets summed into one per image.
fn per_image(ld: &[f32], pixels: usize) -> Vec<f32> {
    ld.chunks(pixels.max(1)).map(|c| c.iter().sum()).collect()
}

impl Conv1x1 {
    /// The 1×1 convolution of images of `shape`.
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for an empty shape.
    pub fn new(shape: ImageShape) -> Result<Self> {
        Self::with_perm(shape, reversal(shape.channels))
    }

    /// The 1×1 convolution of images of `shape`, starting as a random rotation of the channels
    /// (Glow's initialisation: every coupling after it sees a mix of all channels from the first
    /// step, where a fixed reversal hands each coupling the same two halves in turn).
    ///
    /// # Errors
    /// [`Error::InvalidConfig`] for an empty shape.
    pub fn rotation(shape: ImageShape, rng: &mut Rng) -> Result<Self> {
        if shape.is_empty() {
            return Err(Error::config("a 1×1 convolution needs non-empty images"));
        }
        Ok(Self { shape, lu: LuLinear::rotation(shape.channels, rng)? })
    }

    /// The layer of a model file: `perm` is the LU factors' pivot order (the reversal when the
    /// file names none).
    pub(crate) fn with_perm(shape: ImageShape, perm: Vec<usize>) -> Result<Self> {
        if shape.is_empty() {
            return Err(Error::config("a 1×1 convolution needs non-empty images"));
        }
        if perm.len() != shape.channels {
            return Err(Error::config("a 1×1 convolution's permutation needs one entry per channel"));
        }
        Ok(Self { shape, lu: LuLinear::new(perm)? })
    }

    fn check(&self, input: &Matrix) -> Result<()> {
        super::check_width("1×1 convolution input", input, self.shape.len())
    }
}

impl Bijection for Conv1x1 {
    fn dim(&self) -> usize {
        self.shape.len()
    }

    fn transform(&self, input: &Matrix, _context: Option<&Matrix>, direction: Direction) -> Result<(Matrix, Vec<f32>)> {
        self.check(input)?;
        let (out, ld) = self.lu.transform(&to_pixels(input, self.shape), None, direction)?;
        Ok((from_pixels(&out, self.shape), per_image(&ld, self.shape.pixels())))
    }

    fn num_params(&self) -> usize {
        self.lu.num_params()
    }

    fn params(&self, f: &mut dyn FnMut(&[f32])) {
        self.lu.params(f);
    }

    fn params_mut(&mut self, f: &mut dyn FnMut(&mut [f32])) {
        self.lu.params_mut(f);
    }

    fn train_forward(
        &self,
        input: &Matrix,
        _context: Option<&Matrix>,
        direction: Direction,
        tape: &mut Tape,
    ) -> Result<(Matrix, Vec<f32>)> {
        self.check(input)?;
        let (out, ld) = self.lu.train_forward(&to_pixels(input, self.shape), None, direction, tape)?;
        Ok((from_pixels(&out, self.shape), per_image(&ld, self.shape.pixels())))
    }

    fn backward(&self, direction: Direction, tape: &mut Tape, grad_out: Matrix, grad_log_det: &[f32], grads: &mut [f32]) -> Result<Matrix> {
        // Every pixel's log-det adds into its image's: each gets the image's gradient.
        let per_pixel: Vec<f32> = grad_log_det.iter().flat_map(|&g| std::iter::repeat_n(g, self.shape.pixels())).collect();
        let g_in = self.lu.backward(direction, tape, to_pixels(&grad_out, self.shape), &per_pixel, grads)?;
        Ok(from_pixels(&g_in, self.shape))
    }

    fn spec(&self) -> BijectionSpec {
        let perm = self.lu.perm();
        // Files of reversal-started layers stay as they were written before rotations.
        let perm = (perm != reversal(self.shape.channels).as_slice()).then(|| perm.to_vec());
        BijectionSpec::Conv1x1 { shape: self.shape, perm }
    }

    fn tensors(&self, prefix: &str, out: &mut Vec<(String, Vec<f32>)>) {
        self.lu.tensors(prefix, out);
    }

    fn load_tensors(&mut self, prefix: &str, src: &mut TensorSource) -> Result<()> {
        self.lu.load_tensors(prefix, src)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn pixel_rows_hold_each_pixels_channels_and_come_back_exactly() {
        // Enough images that the layout changes split over the workers.
        let shape = ImageShape { channels: 3, height: 4, width: 5 };
        let x = Matrix::from_vec(13, shape.len(), (0..13 * shape.len()).map(|i| i as f32 * 0.5 - 7.0).collect());
        let pixels = to_pixels(&x, shape);
        assert_eq!((pixels.rows(), pixels.cols()), (13 * 20, 3));
        for n in 0..13 {
            for ch in 0..3 {
                for px in 0..20 {
                    assert_eq!(pixels.row(n * 20 + px)[ch], x.row(n)[ch * 20 + px], "image {n} channel {ch} pixel {px}");
                }
            }
        }
        assert_eq!(from_pixels(&pixels, shape).as_slice(), x.as_slice());
    }
}
