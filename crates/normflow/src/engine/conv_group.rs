//! One convolution's passes over a *group* of images held in group layout: channel-major
//! across the group, `channels × (images · pixels)`, so that a whole group is one wide matrix
//! for the products. A network whose layers all read and write group layout ([`GroupConv`] on
//! each layer, see `nn::conv_net`) converts from and to image rows only at its ends; the
//! batch functions (`conv2d_forward`, `conv2d_backward`) wrap one layer with [`gather`] and
//! [`scatter`].
//!
//! A k×k convolution goes through im2col when it widens the channels, and through a
//! stacked-weight product with shifted sums (no im2col) when it narrows them (see [`Plan`]).
//! On AVX-512 the narrow products (im2col's few rows, 1×1 layers of up to 64 channels, the
//! narrowing weight gradients) run through `tile_product`'s register tiles instead of `gemm`,
//! and groups hold whole 16-lane vectors per channel row in line-aligned buffers
//! ([`group_images`], `pool::LineBuf`).

use super::conv::Conv2dShape;
use super::matmul::{matmul_a_bt, matmul_ab, matmul_at_b};
use super::pool;
use super::tile_product::{self, Strided};

/// Pixels per product: images are taken in groups whose pixels add up to about this many, so
/// that a small image (7×7, 14×14) still gives the product a wide matrix.
const GROUP_PIXELS: usize = 1024;

/// `f32` lanes of the widest vectors: a group's channel rows are kept a multiple of this long.
const LANES: usize = 16;

/// The fewest images whose pixels add up to a whole number of [`LANES`]-wide vectors (4 of
/// 14×14, 16 of 7×7, 1 of 28×28).
fn aligned_images(pixels: usize) -> usize {
    let gcd = |mut a: usize, mut b: usize| {
        while b != 0 {
            (a, b) = (b, a % b);
        }
        a
    };
    LANES / gcd(LANES, pixels.max(1))
}

/// Images per group for images of `pixels` pixels: a multiple of [`aligned_images`] near
/// [`GROUP_PIXELS`] pixels, so that every channel row of a full group starts where the one
/// before it does relative to a 64-byte line, and vector loads split no more lines than the
/// first row's (4 images of 14×14, 16 of 7×7: 784 pixels; the tiled products ran 20% faster
/// on such rows than on 980-pixel ones).
pub(crate) fn group_images(pixels: usize) -> usize {
    let a = aligned_images(pixels);
    ((GROUP_PIXELS as f64 / (pixels.max(1) * a) as f64).round() as usize).max(1) * a
}

/// `0..images` cut into groups of [`group_images`] images, the last one shorter when they do
/// not divide.
pub(crate) fn groups(images: usize, pixels: usize) -> impl Iterator<Item = std::ops::Range<usize>> {
    let group = group_images(pixels);
    (0..images).step_by(group).map(move |first| first..(first + group).min(images))
}

/// Most rows (kernel offsets × output channels) of an output-side weight gradient that the
/// tiled reduction takes rather than `gemm`: 36 rows (3×3 to 4 channels) ran at 127–129
/// against 103–107 GFLOP/s there, 144 rows (to 16 channels) at 127–129 against 149–152 (one
/// core, line-aligned groups of 784 pixels, 64 or 256 input channels).
const MOST_TILED_ROWS: usize = 64;

/// Most input channels of a 1×1 layer that the tiled products take rather than `gemm`.
const MOST_TILED_POINTWISE: usize = 64;

/// How a convolution maps onto matrix products.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Plan {
    /// 1×1: `out = W x`, one product.
    Pointwise,
    /// `k×k` with at least as many output channels as input channels: im2col (one row per
    /// input channel and kernel offset), then `out = W col`.
    InputSide,
    /// `k×k` with fewer output channels than input channels (a conditioner's last layer):
    /// `Z = W_stack x` with the k² offset slices of W stacked as rows, then each slice of Z
    /// shifted onto the output. No im2col, and a product k² times taller than the output.
    OutputSide,
}

impl Plan {
    fn of(s: &Conv2dShape) -> Plan {
        match s.kernel {
            1 => Plan::Pointwise,
            _ if s.out_channels < s.in_channels => Plan::OutputSide,
            _ => Plan::InputSide,
        }
    }
}

/// Copies `images` consecutive images of `channels × pixels` values from `src` (image rows)
/// into `dst` in group layout.
pub(crate) fn gather(src: &[f32], images: usize, channels: usize, pixels: usize, dst: &mut [f32]) {
    let cols = images * pixels;
    for i in 0..images {
        for c in 0..channels {
            dst[c * cols + i * pixels..][..pixels].copy_from_slice(&src[(i * channels + c) * pixels..][..pixels]);
        }
    }
}

/// The inverse of [`gather`]: writes (or adds, with `add`) a group back as image rows.
pub(crate) fn scatter(src: &[f32], images: usize, channels: usize, pixels: usize, dst: &mut [f32], add: bool) {
    let cols = images * pixels;
    for i in 0..images {
        for c in 0..channels {
            let (from, to) = (&src[c * cols + i * pixels..][..pixels], &mut dst[(i * channels + c) * pixels..][..pixels]);
            if add {
                to.iter_mut().zip(from).for_each(|(t, f)| *t += f);
            } else {
                to.copy_from_slice(from);
            }
        }
    }
}

/// `dst[p] = src[p + shift]` (or `+=` with `add`) along a whole group row, flat: every `p`
/// with `p + shift` inside the row; a copy zeroes the `p` without one. Across the edges of the
/// images this reads neighbouring rows and images: [`zero_outside`] clears those positions.
/// One pass over the group instead of one per image row segment (7 values long at 7×7).
fn flat_shift(dst: &mut [f32], src: &[f32], shift: isize, add: bool) {
    let n = dst.len();
    let lo = (-shift).clamp(0, n as isize) as usize;
    let hi = (n as isize - shift).clamp(lo as isize, n as isize) as usize;
    // An empty range (a shift past the whole row) leaves `lo + shift` unusable as an index.
    let from = if lo < hi { (lo as isize + shift) as usize } else { 0 };
    let (d, s) = (&mut dst[lo..hi], &src[from..][..hi - lo]);
    if add {
        d.iter_mut().zip(s).for_each(|(a, b)| *a += b);
    } else {
        d.copy_from_slice(s);
        dst[..lo].fill(0.0);
        dst[hi..].fill(0.0);
    }
}

/// Zeroes every pixel `(y, x)` of each of the `images` consecutive `h × w` planes in `buf`
/// whose shift `(y + dy, x + dx)` falls outside its image (the zero padding of a convolution).
fn zero_outside(buf: &mut [f32], images: usize, h: usize, w: usize, (dy, dx): (isize, isize)) {
    let (ys, xs) = (valid(h, dy), valid(w, dx));
    for plane in buf.chunks_exact_mut(h * w).take(images) {
        plane[..ys.start * w].fill(0.0);
        plane[ys.end * w..].fill(0.0);
        for row in plane[ys.start * w..ys.end * w].chunks_exact_mut(w) {
            row[..xs.start].fill(0.0);
            row[xs.end..].fill(0.0);
        }
    }
}

/// The flat distance of a shift by `(dy, dx)` in a plane `w` pixels wide.
fn flat(w: usize, (dy, dx): (isize, isize)) -> isize {
    dy * w as isize + dx
}

/// The positions `p` in `0..n` with `p + shift` also in `0..n`.
fn valid(n: usize, shift: isize) -> std::ops::Range<usize> {
    let lo = (-shift).max(0) as usize;
    let hi = (n as isize - shift.max(0)).max(lo as isize) as usize;
    lo.min(n)..hi.min(n)
}

/// Kernel offsets `(dy, dx)` in row-major order, as signed shifts from the centre.
fn offsets(s: &Conv2dShape) -> impl Iterator<Item = (isize, isize)> {
    let (k, r) = (s.kernel as isize, (s.kernel / 2) as isize);
    (0..k * k).map(move |i| (i / k - r, i % k - r))
}

/// Rows of the im2col matrix: one per (input channel, kernel offset).
fn patch_len(s: &Conv2dShape) -> usize {
    s.in_channels * s.kernel * s.kernel
}

/// im2col of a group: row `(c, offset)` of `col` (`images · pixels` columns) holds channel `c`
/// of each image shifted by the kernel offset, zero outside the image.
fn im2col(s: &Conv2dShape, x: &[f32], images: usize, col: &mut [f32]) {
    let (h, w) = (s.height, s.width);
    let cols = images * h * w;
    for c in 0..s.in_channels {
        for (k, off) in offsets(s).enumerate() {
            let row = &mut col[(c * s.kernel * s.kernel + k) * cols..][..cols];
            flat_shift(row, &x[c * cols..][..cols], flat(w, off), false);
            zero_outside(row, images, h, w, off);
        }
    }
}

/// The adjoint of [`im2col`]: adds each row of `col` back onto the pixels it was read from
/// (`col` is clobbered: its padding positions are zeroed first).
fn col2im_add(s: &Conv2dShape, col: &mut [f32], images: usize, x: &mut [f32]) {
    let (h, w) = (s.height, s.width);
    let cols = images * h * w;
    for c in 0..s.in_channels {
        for (k, off) in offsets(s).enumerate() {
            let row = &mut col[(c * s.kernel * s.kernel + k) * cols..][..cols];
            zero_outside(row, images, h, w, off);
            flat_shift(&mut x[c * cols..][..cols], row, -flat(w, off), true);
        }
    }
}

/// W `[out, in, k, k]` restacked as `[k² · out, in]`: one `out × in` slice per kernel offset.
fn stack_weight(s: &Conv2dShape, weight: &[f32], stacked: &mut [f32]) {
    let kk = s.kernel * s.kernel;
    for o in 0..s.out_channels {
        for c in 0..s.in_channels {
            for k in 0..kk {
                stacked[(k * s.out_channels + o) * s.in_channels + c] = weight[(o * s.in_channels + c) * kk + k];
            }
        }
    }
}

/// The inverse of [`stack_weight`], added onto `weight`.
fn unstack_weight_add(s: &Conv2dShape, stacked: &[f32], weight: &mut [f32]) {
    let kk = s.kernel * s.kernel;
    for o in 0..s.out_channels {
        for c in 0..s.in_channels {
            for k in 0..kk {
                weight[(o * s.in_channels + c) * kk + k] += stacked[(k * s.out_channels + o) * s.in_channels + c];
            }
        }
    }
}

/// A convolution prepared for passes over groups in group layout: its shape (`batch` is
/// ignored: each pass names its group's image count), its weights (restacked once when its
/// plan needs them) and biases.
pub(crate) struct GroupConv<'a> {
    s: Conv2dShape,
    plan: Plan,
    weight: &'a [f32],
    /// The weights as `[k² · out, in]` for the output-side plan.
    stacked: Option<Vec<f32>>,
    bias: &'a [f32],
}

impl<'a> GroupConv<'a> {
    /// Prepares the convolution of shape `s` with `weight` (`[out, in, k, k]`) and `bias`.
    ///
    /// # Panics
    /// If the kernel is even or a slice's length does not match `s`.
    pub fn new(s: Conv2dShape, weight: &'a [f32], bias: &'a [f32]) -> Self {
        assert!(s.kernel % 2 == 1, "convolution kernels are odd");
        assert_eq!(weight.len(), s.weight_len(), "weight length");
        assert_eq!(bias.len(), s.out_channels, "bias length");
        let plan = Plan::of(&s);
        let stacked = (plan == Plan::OutputSide).then(|| {
            let mut w = pool::scratch(s.weight_len());
            stack_weight(&s, weight, &mut w);
            w
        });
        Self { s, plan, weight, stacked, bias }
    }

    fn pixels(&self) -> usize {
        self.s.height * self.s.width
    }

    /// Whether the passes go through the register-tiled products (with the bias, ReLU and
    /// bias gradient inside them) rather than `gemm`: on AVX-512, for the input-side plan, and
    /// for 1×1 layers of at most [`MOST_TILED_POINTWISE`] input channels.
    fn tiled(&self) -> bool {
        tile_product::active()
            && match self.plan {
                Plan::InputSide => true,
                Plan::Pointwise => self.s.in_channels <= MOST_TILED_POINTWISE,
                Plan::OutputSide => false,
            }
    }

    /// Scratch values [`GroupConv::forward`] and [`GroupConv::backward`] need for a group of
    /// `images` images.
    pub fn work_len(&self, images: usize) -> usize {
        let cols = images * self.pixels();
        match self.plan {
            Plan::Pointwise => 0,
            Plan::InputSide => 2 * patch_len(&self.s) * cols,
            Plan::OutputSide => self.s.kernel * self.s.kernel * self.s.out_channels * cols,
        }
    }

    /// Values of [`GroupConv::backward`]'s weight-gradient accumulator (the weights, in the
    /// layout of the plan's product).
    pub fn weight_grad_len(&self) -> usize {
        self.s.weight_len()
    }

    /// `y = conv(x) + bias` for a group of `images` images (`x`: `in × cols`, `y`:
    /// `out × cols`, `cols = images · pixels`), then `y = max(y, 0)` when `relu`.
    pub fn forward(&self, images: usize, x: &[f32], y: &mut [f32], work: &mut [f32], relu: bool) {
        let s = &self.s;
        let cols = images * self.pixels();
        let y = &mut y[..s.out_channels * cols];
        match self.plan {
            Plan::Pointwise if self.tiled() => {
                let w = Strided::rows(self.weight, s.in_channels);
                return tile_product::broadcast_product(y, w, x, s.out_channels, cols, s.in_channels, Some(self.bias), relu);
            }
            Plan::Pointwise => matmul_ab(y, self.weight, x, s.out_channels, cols, s.in_channels, false),
            Plan::InputSide if self.tiled() => {
                // The bias and ReLU inside the product's tiles: nothing left to do after.
                im2col(s, x, images, work);
                let w = Strided::rows(self.weight, patch_len(s));
                return tile_product::broadcast_product(y, w, work, s.out_channels, cols, patch_len(s), Some(self.bias), relu);
            }
            Plan::InputSide => {
                im2col(s, x, images, work);
                matmul_ab(y, self.weight, work, s.out_channels, cols, patch_len(s), false);
            }
            Plan::OutputSide => {
                let w = self.stacked.as_deref().expect("stacked for this plan");
                let rows = s.kernel * s.kernel * s.out_channels;
                matmul_ab(work, w, x, rows, cols, s.in_channels, false);
                y.fill(0.0);
                for (k, (dy, dx)) in offsets(s).enumerate() {
                    for o in 0..s.out_channels {
                        // y[p] += Z_k[p + shift] where p's shift lies inside its image: the Z_k
                        // a flat shift would carry onto other pixels are zeroed first.
                        let z = &mut work[(k * s.out_channels + o) * cols..][..cols];
                        zero_outside(z, images, s.height, s.width, (-dy, -dx));
                        flat_shift(&mut y[o * cols..][..cols], z, flat(s.width, (dy, dx)), true);
                    }
                }
            }
        }
        // The bias (and the ReLU) in one pass over the output.
        for (row, &b) in y.chunks_mut(cols).zip(self.bias) {
            if relu {
                row.iter_mut().for_each(|v| *v = (*v + b).max(0.0));
            } else {
                row.iter_mut().for_each(|v| *v += b);
            }
        }
    }

    /// Backward of [`GroupConv::forward`] (without its ReLU) for a group: given the group's
    /// input `x` and the gradient `g` of its output, writes the input gradient into `gx`
    /// (`in × cols`) and adds the weight and bias gradients into `gw`
    /// ([`GroupConv::weight_grad_len`] values, plan layout: see
    /// [`GroupConv::add_weight_grad`]) and `gb`.
    #[allow(clippy::too_many_arguments)]
    pub fn backward(&self, images: usize, x: &[f32], g: &[f32], gx: &mut [f32], gw: &mut [f32], gb: &mut [f32], work: &mut [f32]) {
        let s = &self.s;
        let cols = images * self.pixels();
        let gx = &mut gx[..s.in_channels * cols];
        // The tiles sum the bias gradient with the weight gradient's loads.
        let tiled = self.tiled();
        if !tiled {
            for (row, b) in g.chunks(cols).take(s.out_channels).zip(gb.iter_mut()) {
                *b += super::fastmath::sum(row);
            }
        }
        match self.plan {
            Plan::Pointwise if tiled => {
                tile_product::reduce_product(gw, g, x, s.out_channels, s.in_channels, cols, Some(gb));
                let wt = Strided::transposed(self.weight, s.in_channels);
                tile_product::broadcast_product(gx, wt, g, s.in_channels, cols, s.out_channels, None, false);
            }
            Plan::Pointwise => {
                // out = W x: ∂x = Wᵀ g, ∂W += g xᵀ.
                matmul_at_b(gx, self.weight, g, s.in_channels, cols, s.out_channels, false);
                matmul_a_bt(gw, g, x, s.out_channels, s.in_channels, cols, true);
            }
            Plan::InputSide => {
                let (col, grad_col) = work.split_at_mut(patch_len(s) * cols);
                im2col(s, x, images, col);
                if tiled {
                    tile_product::reduce_product(gw, g, col, s.out_channels, patch_len(s), cols, Some(gb));
                    let wt = Strided::transposed(self.weight, patch_len(s));
                    tile_product::broadcast_product(grad_col, wt, g, patch_len(s), cols, s.out_channels, None, false);
                } else {
                    matmul_a_bt(gw, g, col, s.out_channels, patch_len(s), cols, true);
                    matmul_at_b(grad_col, self.weight, g, patch_len(s), cols, s.out_channels, false);
                }
                gx.fill(0.0);
                col2im_add(s, grad_col, images, gx);
            }
            Plan::OutputSide => {
                // out = Σ_k shift_k(W_k x): ∂Z_k = shift_k⁻¹(g), ∂x = W_stackᵀ ∂Z, ∂W_stack += ∂Z xᵀ.
                let rows = s.kernel * s.kernel * s.out_channels;
                for (k, (dy, dx)) in offsets(s).enumerate() {
                    for o in 0..s.out_channels {
                        let dz = &mut work[(k * s.out_channels + o) * cols..][..cols];
                        flat_shift(dz, &g[o * cols..][..cols], -flat(s.width, (dy, dx)), false);
                        zero_outside(dz, images, s.height, s.width, (-dy, -dx));
                    }
                }
                let w = self.stacked.as_deref().expect("stacked for this plan");
                matmul_at_b(gx, w, work, s.in_channels, cols, rows, false);
                if tile_product::active() && rows <= MOST_TILED_ROWS {
                    tile_product::reduce_product(gw, work, x, rows, s.in_channels, cols, None);
                } else {
                    matmul_a_bt(gw, work, x, rows, s.in_channels, cols, true);
                }
            }
        }
    }

    /// Adds a weight gradient accumulated by [`GroupConv::backward`] (plan layout) onto
    /// `weight_grad` in the weights' own layout `[out, in, k, k]`.
    pub fn add_weight_grad(&self, accumulated: &[f32], weight_grad: &mut [f32]) {
        if self.plan == Plan::OutputSide {
            unstack_weight_add(&self.s, accumulated, weight_grad);
        } else {
            weight_grad.iter_mut().zip(accumulated).for_each(|(a, b)| *a += b);
        }
    }
}

impl Drop for GroupConv<'_> {
    fn drop(&mut self) {
        if let Some(w) = self.stacked.take() {
            pool::give(w);
        }
    }
}
