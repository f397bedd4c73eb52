//! A register-tiled linear layer for narrow layers (at most 64 outputs, at most 256 inputs):
//! `out = x · Wᵀ + b`, then ReLU when asked, in one pass that keeps a tile of rows × outputs in
//! vector registers across all inputs and adds the bias and clips before the single store.
//!
//! `gemm` packs both operands of every call and leaves the bias and activation to a second pass
//! over the output; for the small conditioners of tabular flows (8 to 64 units, 512-row blocks)
//! those costs are as large as the multiply-adds. Here the weight is transposed into a
//! zero-padded `[fan_in, 64]` [`Panel`] (at most 64 KB, in L1/L2 for the whole call; networks
//! keep theirs between parameter changes), the rows are read where they lie, and each tile of
//! `R` rows × `C` outputs runs all inputs with its accumulators (up to 24) in AVX-512
//! registers.
//!
//! On AVX2 + FMA the tiles are 6 rows × 16 outputs (12 × 8 for the narrowest layers) in
//! 8-lane vectors.

use super::isa::{self, Isa};
use super::kept::Kept;
use super::matmul::instrumented;
use super::pool;

/// Most outputs the register-tiled layer takes.
pub(crate) const MAX_OUTPUTS: usize = 64;
/// Most inputs the register-tiled layer takes (its weight panel stays in the L2 cache).
pub(crate) const MAX_INPUTS: usize = 256;

/// Whether the register tiles take a layer of this shape.
pub(crate) fn fits(fan_in: usize, fan_out: usize) -> bool {
    fan_in <= MAX_INPUTS && fan_out <= MAX_OUTPUTS && fan_out > 0
}

/// Whether the register tiles run on this thread's instruction set (AVX-512, or AVX2 + FMA);
/// portable code sends the layers through `gemm`.
pub(crate) fn active() -> bool {
    isa::active() >= Isa::Avx2Fma
}

/// Whether a masked layer that [`fits`] goes on the register tiles whole, its fixed weights
/// zeros, rather than through `gemm` one block of free weights at a time: with 16-lane vectors
/// (AVX-512) the dense work costs less than the blocks' calls; with 8 lanes it does not (a MAF's
/// M log-prob ran 7% slower on the AVX2 tiles than on `gemm`'s blocks,
/// `bench/results/2026-12-08-avx2-emulated-xeon.txt`).
pub(crate) fn takes_masked() -> bool {
    isa::active() == Isa::Avx512
}

/// `out = x · Wᵀ + b` for `rows` rows of `x` (`fan_in` wide), the weight `[fan_out, fan_in]`,
/// `fan_out = b.len()`, clipped at zero when `relu`; `out` (`rows × fan_out`) is overwritten.
///
/// # Panics
/// If the shape does not [`fits`], or a slice is shorter than the shape says.
pub(crate) fn small_linear(out: &mut [f32], x: &[f32], w: &[f32], b: &[f32], rows: usize, fan_in: usize, relu: bool) {
    Panel::new(w, b, fan_in).apply(out, x, rows, relu);
}

/// A layer's weight transposed into the register tiles' layout, `panel[k · stride + j] =
/// W[j, k]` with rows zero-padded to a multiple of 64 (every tile width divides it), and its
/// bias padded alike. A network whose weights do not change between calls (inference) keeps
/// its panels instead of transposing each call.
#[derive(Debug)]
pub(crate) struct Panel {
    weight: Vec<f32>,
    bias: Vec<f32>,
    fan_in: usize,
    fan_out: usize,
    stride: usize,
}

impl Panel {
    /// The panel of weight `w` (`[fan_out, fan_in]`, `fan_out = b.len()`) and bias `b`.
    ///
    /// # Panics
    /// If the shape does not [`fits`] or `w` is too short.
    pub(crate) fn new(w: &[f32], b: &[f32], fan_in: usize) -> Self {
        let fan_out = b.len();
        assert!(fits(fan_in, fan_out), "small_linear takes at most {MAX_INPUTS} inputs and 1..={MAX_OUTPUTS} outputs");
        assert!(w.len() >= fan_out * fan_in, "weight shorter than its shape");
        let stride = fan_out.div_ceil(MAX_OUTPUTS) * MAX_OUTPUTS;
        let mut weight = pool::zeroed(fan_in * stride);
        for (k, row) in weight.chunks_exact_mut(stride).enumerate() {
            for (j, v) in row[..fan_out].iter_mut().enumerate() {
                *v = w[j * fan_in + k];
            }
        }
        let mut bias = pool::zeroed(stride);
        bias[..fan_out].copy_from_slice(b);
        Self { weight, bias, fan_in, fan_out, stride }
    }

    /// `out = x · Wᵀ + b` for `rows` rows of `x`, clipped at zero when `relu`; `out`
    /// (`rows × fan_out`) is overwritten.
    ///
    /// # Panics
    /// If a slice is shorter than the shape says.
    pub(crate) fn apply(&self, out: &mut [f32], x: &[f32], rows: usize, relu: bool) {
        let (fan_in, fan_out) = (self.fan_in, self.fan_out);
        assert!(x.len() >= rows * fan_in && out.len() >= rows * fan_out, "rows shorter than their shape");
        let l = Layer { x, panel: &self.weight, bias: &self.bias, rows, fan_in, fan_out, stride: self.stride, relu };
        // Timed by the product clock like `gemm`'s calls: these tiles are the layer's product.
        // SAFETY: each arm runs only where `isa::active` (never wider than the CPU) names its
        // instruction set; the tile widths divide the stride (a multiple of 64).
        #[cfg(target_arch = "x86_64")]
        match isa::active() {
            Isa::Avx512 => return instrumented(|| unsafe { x86::run_avx512(&l, out) }),
            Isa::Avx2Fma => return instrumented(|| unsafe { x86::run_avx2(&l, out) }),
            Isa::Portable => {}
        }
        portable(&l, out);
    }
}

/// A layer's [`Panel`] kept between parameter changes (see [`Kept`]).
pub(crate) type KeptPanel = Kept<Panel>;

impl Kept<Panel> {
    /// The panel of weight `w` (`[b.len(), fan_in]`) and bias `b`, built on first use, when the
    /// register tiles take the shape and run on this thread (`None` otherwise: use `gemm`).
    pub(crate) fn get(&self, w: &[f32], b: &[f32], fan_in: usize) -> Option<&Panel> {
        if !active() {
            return None;
        }
        self.get_or_build(|| fits(fan_in, b.len()).then(|| Panel::new(w, b, fan_in)))
    }
}

impl Drop for Panel {
    fn drop(&mut self) {
        pool::give(std::mem::take(&mut self.weight));
        pool::give(std::mem::take(&mut self.bias));
    }
}

/// One call's operands: rows `x`, the padded transposed weight panel and bias.
struct Layer<'a> {
    x: &'a [f32],
    panel: &'a [f32],
    bias: &'a [f32],
    rows: usize,
    fan_in: usize,
    fan_out: usize,
    /// Values from one input's panel row to the next.
    stride: usize,
    relu: bool,
}

/// The layer one row and output at a time: for a call on a thread capped below AVX-512.
fn portable(l: &Layer, out: &mut [f32]) {
    for r in 0..l.rows {
        let row = &l.x[r * l.fan_in..][..l.fan_in];
        for j in 0..l.fan_out {
            let s = row.iter().enumerate().fold(l.bias[j], |s, (k, &v)| v.mul_add(l.panel[k * l.stride + j], s));
            out[r * l.fan_out + j] = if l.relu { s.max(0.0) } else { s };
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    //! The register tiles, written once over a vector type: AVX-512 (16 lanes) and AVX2 (8).
    use super::Layer;
    use std::arch::x86_64::*;

    /// The vector operations a tile needs. Every method is inlined into a tile, and the tile
    /// into a `run_*` function that enables the instruction set.
    trait Vector: Copy {
        /// `f32` lanes per vector.
        const N: usize;
        /// `N` values from `p`.
        unsafe fn load(p: *const f32) -> Self;
        /// `v` in every lane.
        unsafe fn splat(v: f32) -> Self;
        /// `a · b + c`, fused.
        unsafe fn mul_add(a: Self, b: Self, c: Self) -> Self;
        /// `max(a, 0)`.
        unsafe fn relu(a: Self) -> Self;
        /// The first `lanes` (1..=N) values of `a` to `p`.
        unsafe fn store(p: *mut f32, a: Self, lanes: usize);
    }

    impl Vector for __m512 {
        const N: usize = 16;
        #[inline(always)]
        unsafe fn load(p: *const f32) -> Self {
            unsafe { _mm512_loadu_ps(p) }
        }
        #[inline(always)]
        unsafe fn splat(v: f32) -> Self {
            _mm512_set1_ps(v)
        }
        #[inline(always)]
        unsafe fn mul_add(a: Self, b: Self, c: Self) -> Self {
            _mm512_fmadd_ps(a, b, c)
        }
        #[inline(always)]
        unsafe fn relu(a: Self) -> Self {
            _mm512_max_ps(a, _mm512_setzero_ps())
        }
        #[inline(always)]
        unsafe fn store(p: *mut f32, a: Self, lanes: usize) {
            unsafe {
                if lanes == 16 {
                    _mm512_storeu_ps(p, a);
                } else {
                    _mm512_mask_storeu_ps(p, ((1u32 << lanes) - 1) as u16, a);
                }
            }
        }
    }

    impl Vector for __m256 {
        const N: usize = 8;
        #[inline(always)]
        unsafe fn load(p: *const f32) -> Self {
            unsafe { _mm256_loadu_ps(p) }
        }
        #[inline(always)]
        unsafe fn splat(v: f32) -> Self {
            _mm256_set1_ps(v)
        }
        #[inline(always)]
        unsafe fn mul_add(a: Self, b: Self, c: Self) -> Self {
            _mm256_fmadd_ps(a, b, c)
        }
        #[inline(always)]
        unsafe fn relu(a: Self) -> Self {
            _mm256_max_ps(a, _mm256_setzero_ps())
        }
        #[inline(always)]
        unsafe fn store(p: *mut f32, a: Self, lanes: usize) {
            unsafe {
                if lanes == 8 {
                    _mm256_storeu_ps(p, a);
                } else {
                    // A ragged edge: through a buffer, `lanes` values stored.
                    let mut buf = [0.0f32; 8];
                    _mm256_storeu_ps(buf.as_mut_ptr(), a);
                    std::ptr::copy_nonoverlapping(buf.as_ptr(), p, lanes);
                }
            }
        }
    }

    /// Rows `r0 .. r0 + R` × outputs `c0 .. c0 + V·N` (those below `fan_out` stored): the
    /// accumulators stay in registers over all inputs, the bias starts them, ReLU ends them.
    ///
    /// # Safety
    /// The CPU has the vector type's instruction set; `r0 + R ≤ rows` and `c0 + V·N ≤ stride`.
    #[inline(always)]
    unsafe fn tile<S: Vector, const R: usize, const V: usize>(l: &Layer, out: &mut [f32], r0: usize, c0: usize) {
        unsafe {
            let bias: [S; V] = std::array::from_fn(|v| S::load(l.bias.as_ptr().add(c0 + v * S::N)));
            let mut acc = [bias; R];
            let x = l.x.as_ptr().add(r0 * l.fan_in);
            let mut w = l.panel.as_ptr().add(c0);
            for k in 0..l.fan_in {
                let wk: [S; V] = std::array::from_fn(|v| S::load(w.add(v * S::N)));
                for (r, a) in acc.iter_mut().enumerate() {
                    let xv = S::splat(*x.add(r * l.fan_in + k));
                    for v in 0..V {
                        a[v] = S::mul_add(xv, wk[v], a[v]);
                    }
                }
                w = w.add(l.stride);
            }
            let width = (V * S::N).min(l.fan_out - c0);
            for (r, a) in acc.iter().enumerate() {
                let dst = out.as_mut_ptr().add((r0 + r) * l.fan_out + c0);
                for (v, &a) in a.iter().enumerate() {
                    let lanes = width.saturating_sub(v * S::N).min(S::N);
                    if lanes > 0 {
                        S::store(dst.add(v * S::N), if l.relu { S::relu(a) } else { a }, lanes);
                    }
                }
            }
        }
    }

    /// All tiles of the layer: `R` rows at a time, the leftover rows one by one.
    ///
    /// # Safety
    /// As [`tile`]; `V·N` divides `stride`; `out` holds the rows.
    #[inline(always)]
    unsafe fn tiles<S: Vector, const R: usize, const V: usize>(l: &Layer, out: &mut [f32]) {
        let full = l.rows / R * R;
        for c0 in (0..l.fan_out).step_by(V * S::N) {
            for r0 in (0..full).step_by(R) {
                unsafe { tile::<S, R, V>(l, out, r0, c0) };
            }
            for r0 in full..l.rows {
                unsafe { tile::<S, 1, V>(l, out, r0, c0) };
            }
        }
    }

    /// The layer on AVX-512: tiles of 12 rows × 16 or 32 outputs (the fewest vectors that cover
    /// the layer), or 6 rows × 64 for wider layers (32 registers hold 24 accumulators).
    ///
    /// # Safety
    /// The CPU has AVX-512F; the stride is a multiple of 64.
    #[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
    pub(super) unsafe fn run_avx512(l: &Layer, out: &mut [f32]) {
        unsafe {
            match l.fan_out {
                0..=16 => tiles::<__m512, 12, 1>(l, out),
                17..=32 => tiles::<__m512, 12, 2>(l, out),
                _ => tiles::<__m512, 6, 4>(l, out),
            }
        }
    }

    /// The layer on AVX2 + FMA: tiles of 12 rows × 8 outputs for the narrowest layers, else
    /// 6 rows × 16 (16 registers: 12 accumulators, the weights and the broadcast input).
    ///
    /// # Safety
    /// The CPU has AVX2 and FMA; the stride is a multiple of 64.
    #[target_feature(enable = "avx2,fma")]
    pub(super) unsafe fn run_avx2(l: &Layer, out: &mut [f32]) {
        unsafe {
            match l.fan_out {
                0..=8 => tiles::<__m256, 12, 1>(l, out),
                _ => tiles::<__m256, 6, 2>(l, out),
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn every_path_matches_the_formula() {
        for isa in Isa::supported() {
            for (rows, fan_in, fan_out) in [(1, 1, 1), (13, 4, 8), (37, 9, 16), (50, 64, 64), (23, 3, 21), (7, 256, 40), (512, 64, 17)] {
                let x: Vec<f32> = (0..rows * fan_in).map(|i| ((i * 37) % 23) as f32 * 0.25 - 2.5).collect();
                let w: Vec<f32> = (0..fan_out * fan_in).map(|i| ((i * 11) % 13) as f32 * 0.125 - 0.75).collect();
                let b: Vec<f32> = (0..fan_out).map(|j| j as f32 * 0.5 - 4.0).collect();
                for relu in [false, true] {
                    let mut out = vec![f32::NAN; rows * fan_out];
                    isa::with_isa(isa, || small_linear(&mut out, &x, &w, &b, rows, fan_in, relu));
                    for r in 0..rows {
                        for j in 0..fan_out {
                            let a = (0..fan_in).map(|i| x[r * fan_in + i] as f64 * w[j * fan_in + i] as f64).sum::<f64>() + b[j] as f64;
                            let want = if relu { a.max(0.0) } else { a };
                            let got = out[r * fan_out + j] as f64;
                            assert!(
                                (got - want).abs() <= 1e-4 * (1.0 + want.abs()),
                                "{isa:?} {rows}x{fan_in}->{fan_out} row {r} out {j}: {got} vs {want}"
                            );
                        }
                    }
                }
            }
        }
    }
}
