//! Register-tiled products for the convolutions `gemm` serves poorly: the ones whose inner
//! dimension or one side is a few dozen (an image conditioner's first layer, 2 or 8 input
//! channels × 3×3 = 18 or 72 im2col rows, against 256 output channels and ~1,000 pixels).
//!
//! At such shapes `gemm` spends as long packing its operands and reading and writing its
//! output tiles as multiplying, and the bias and ReLU take another pass over the output. Here:
//! - [`broadcast_product`]: `out = act(A·B + bias)` with `B` read where it lies, each tile of
//!   6 rows × 4 16-lane vectors of columns (or 9 × 3) held in registers over the whole inner
//!   dimension (`A`'s entries broadcast, `A` by strides, so a transposed weight costs nothing),
//!   the bias starting the accumulators and the ReLU applied before the single store;
//! - [`reduce_product`]: `out += A·Bᵀ` for two wide matrices (a weight gradient: output
//!   gradient × im2col rows), each tile of 24 outputs accumulated in 24 vector registers
//!   along the rows and summed across lanes once at the end, with the row sums of `A` (the
//!   bias gradient) from the same loads when asked.
//!
//! Both read rows in 16-lane vectors; they run fastest when every row starts a 64-byte line
//! (the convolutions' groups are laid out so: `pool::LineBuf`, `conv_group::group_images`).
//!
//! AVX-512 only (32 vector registers hold the tiles); callers use `gemm` where [`active`] is
//! false. The portable versions exist for those calls and for the tests.

use super::isa::{self, Isa};
use super::matmul::instrumented;

/// Whether the register tiles run on this thread's instruction set (AVX-512).
pub(crate) fn active() -> bool {
    isa::active() == Isa::Avx512
}

/// A read-only matrix given by strides: entry `(i, j)` at `data[i · row + j · col]`.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Strided<'a> {
    /// The entries.
    pub data: &'a [f32],
    /// Elements from one row to the next.
    pub row: usize,
    /// Elements from one column to the next.
    pub col: usize,
}

impl<'a> Strided<'a> {
    /// A dense row-major `rows × cols` matrix.
    pub fn rows(data: &'a [f32], cols: usize) -> Self {
        Self { data, row: cols, col: 1 }
    }

    /// The transpose of a dense row-major matrix of `cols` columns: entry `(i, j)` is the
    /// stored `(j, i)`.
    pub fn transposed(data: &'a [f32], cols: usize) -> Self {
        Self { data, row: 1, col: cols }
    }

    fn covers(&self, rows: usize, cols: usize) -> bool {
        rows == 0 || cols == 0 || (rows - 1) * self.row + (cols - 1) * self.col < self.data.len()
    }
}

/// `out[m×n] = A[m×k] · B[k×n] + bias` (`bias[i]` added to row `i` when given), clipped at zero
/// when `relu`; `B` and `out` dense row-major with `n` columns.
///
/// # Panics
/// If a slice is shorter than the shape says.
#[allow(clippy::too_many_arguments)]
pub(crate) fn broadcast_product(out: &mut [f32], a: Strided, b: &[f32], m: usize, n: usize, k: usize, bias: Option<&[f32]>, relu: bool) {
    assert!(a.covers(m, k) && b.len() >= k * n && out.len() >= m * n, "operands shorter than their shape");
    assert!(bias.is_none_or(|b| b.len() >= m), "bias shorter than the rows");
    let p = Broadcast { a, b, m, n, k, bias, relu };
    #[cfg(target_arch = "x86_64")]
    if active() {
        // SAFETY: `active` names only instruction sets the CPU has; the shapes were checked.
        return instrumented(|| unsafe { x86::broadcast_avx512(&p, out) });
    }
    broadcast_portable(&p, out);
}

/// `out[m×k] += A[m×n] · B[k×n]ᵀ`, all dense row-major, and `row_sums[i] += Σ_c A[i, c]` when
/// given (a bias gradient, from the same loads of `A`).
///
/// # Panics
/// If a slice is shorter than the shape says.
pub(crate) fn reduce_product(out: &mut [f32], a: &[f32], b: &[f32], m: usize, k: usize, n: usize, row_sums: Option<&mut [f32]>) {
    assert!(a.len() >= m * n && b.len() >= k * n && out.len() >= m * k, "operands shorter than their shape");
    assert!(row_sums.as_ref().is_none_or(|s| s.len() >= m), "row sums shorter than the rows");
    let p = Reduce { a, b, m, k, n };
    #[cfg(target_arch = "x86_64")]
    if active() {
        // SAFETY: as above.
        return instrumented(|| unsafe { x86::reduce_avx512(&p, out, row_sums) });
    }
    reduce_portable(&p, out, row_sums);
}

/// The operands of one [`broadcast_product`].
struct Broadcast<'a> {
    a: Strided<'a>,
    b: &'a [f32],
    m: usize,
    n: usize,
    k: usize,
    bias: Option<&'a [f32]>,
    relu: bool,
}

/// The operands of one [`reduce_product`].
struct Reduce<'a> {
    a: &'a [f32],
    b: &'a [f32],
    m: usize,
    k: usize,
    n: usize,
}

fn broadcast_portable(p: &Broadcast, out: &mut [f32]) {
    for i in 0..p.m {
        let row = &mut out[i * p.n..][..p.n];
        row.fill(p.bias.map_or(0.0, |b| b[i]));
        for j in 0..p.k {
            let s = p.a.data[i * p.a.row + j * p.a.col];
            row.iter_mut().zip(&p.b[j * p.n..][..p.n]).for_each(|(o, &v)| *o = s.mul_add(v, *o));
        }
        if p.relu {
            row.iter_mut().for_each(|v| *v = v.max(0.0));
        }
    }
}

fn reduce_portable(p: &Reduce, out: &mut [f32], row_sums: Option<&mut [f32]>) {
    if let Some(sums) = row_sums {
        for (i, s) in sums[..p.m].iter_mut().enumerate() {
            *s += p.a[i * p.n..][..p.n].iter().sum::<f32>();
        }
    }
    for i in 0..p.m {
        for j in 0..p.k {
            let (x, y) = (&p.a[i * p.n..][..p.n], &p.b[j * p.n..][..p.n]);
            out[i * p.k + j] += x.iter().zip(y).map(|(x, y)| x * y).sum::<f32>();
        }
    }
}

#[cfg(target_arch = "x86_64")]
mod x86 {
    //! The register tiles, in AVX-512 vectors of 16 lanes.
    use super::{Broadcast, Reduce};
    use std::arch::x86_64::*;

    /// Lanes of one vector.
    const N: usize = 16;

    /// The lanes of a vector starting at column `c` that lie before column `n`.
    fn lanes_mask(c: usize, n: usize) -> u16 {
        match n.saturating_sub(c) {
            0 => 0,
            l if l >= N => u16::MAX,
            l => (1u16 << l) - 1,
        }
    }

    /// Rows `r0 .. r0 + R` × columns `c0 .. c0 + V·16` of a broadcast product (columns at or
    /// past `n` neither read nor written when `TAIL`).
    ///
    /// # Safety
    /// AVX-512F; `r0 + R ≤ m`; without `TAIL`, `c0 + V·16 ≤ n`.
    #[inline(always)]
    unsafe fn broadcast_tile<const R: usize, const V: usize, const TAIL: bool>(p: &Broadcast, out: &mut [f32], r0: usize, c0: usize) {
        unsafe {
            let masks: [u16; V] = std::array::from_fn(|v| if TAIL { lanes_mask(c0 + v * N, p.n) } else { u16::MAX });
            let mut acc: [[__m512; V]; R] = std::array::from_fn(|r| [p.bias.map_or(_mm512_setzero_ps(), |b| _mm512_set1_ps(b[r0 + r])); V]);
            let a = p.a.data.as_ptr().add(r0 * p.a.row);
            let mut b = p.b.as_ptr().add(c0);
            for j in 0..p.k {
                let bj: [__m512; V] =
                    std::array::from_fn(
                        |v| if TAIL { _mm512_maskz_loadu_ps(masks[v], b.add(v * N)) } else { _mm512_loadu_ps(b.add(v * N)) },
                    );
                for (r, acc) in acc.iter_mut().enumerate() {
                    let s = _mm512_set1_ps(*a.add(r * p.a.row + j * p.a.col));
                    for v in 0..V {
                        acc[v] = _mm512_fmadd_ps(s, bj[v], acc[v]);
                    }
                }
                b = b.add(p.n);
            }
            for (r, acc) in acc.iter().enumerate() {
                let dst = out.as_mut_ptr().add((r0 + r) * p.n + c0);
                for v in 0..V {
                    let s = if p.relu { _mm512_max_ps(acc[v], _mm512_setzero_ps()) } else { acc[v] };
                    if TAIL {
                        _mm512_mask_storeu_ps(dst.add(v * N), masks[v], s);
                    } else {
                        _mm512_storeu_ps(dst.add(v * N), s);
                    }
                }
            }
        }
    }

    /// Every tile of a broadcast product, one column panel of `V` vectors at a time (the panel
    /// of `B` stays in the L1 cache while all rows pass over it).
    ///
    /// # Safety
    /// AVX-512F; the shapes checked by the caller.
    #[inline(always)]
    unsafe fn broadcast_tiles<const R: usize, const V: usize>(p: &Broadcast, out: &mut [f32]) {
        let full_rows = p.m / R * R;
        for c0 in (0..p.n).step_by(V * N) {
            unsafe {
                if c0 + V * N <= p.n {
                    for r0 in (0..full_rows).step_by(R) {
                        broadcast_tile::<R, V, false>(p, out, r0, c0);
                    }
                    for r0 in full_rows..p.m {
                        broadcast_tile::<1, V, false>(p, out, r0, c0);
                    }
                } else {
                    for r0 in (0..full_rows).step_by(R) {
                        broadcast_tile::<R, V, true>(p, out, r0, c0);
                    }
                    for r0 in full_rows..p.m {
                        broadcast_tile::<1, V, true>(p, out, r0, c0);
                    }
                }
            }
        }
    }

    /// A broadcast product on AVX-512: tiles of 6 rows × 64 columns, or of 9 rows × 48 columns
    /// for a long inner dimension and rows in nines (an input gradient of 18 or 72 im2col rows
    /// through 256 channels: one pass fewer over `B` than in sixes, and a panel of `B` that
    /// still fits the L1 cache; 144 against 132 GFLOP/s on one core at 18 × 256 × 784).
    ///
    /// # Safety
    /// AVX-512F and the shapes checked by the caller.
    #[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
    pub(super) unsafe fn broadcast_avx512(p: &Broadcast, out: &mut [f32]) {
        unsafe {
            if p.k > 96 && p.m.is_multiple_of(9) {
                broadcast_tiles::<9, 3>(p, out)
            } else if !p.m.is_multiple_of(6) && p.m.is_multiple_of(8) {
                broadcast_tiles::<8, 3>(p, out)
            } else {
                broadcast_tiles::<6, 4>(p, out)
            }
        }
    }

    /// Outputs `(i0 .. i0 + RM) × (j0 .. j0 + RK)` of a reduce product: dot products along the
    /// rows, 16 columns at a time, the last step masked; with `SUMS`, also the sums of rows
    /// `i0 .. i0 + RM` of `A` into `sums`.
    ///
    /// # Safety
    /// AVX-512F; `i0 + RM ≤ m`, `j0 + RK ≤ k`; with `SUMS`, `sums` holds `m` values.
    #[inline(always)]
    unsafe fn reduce_tile<const RM: usize, const RK: usize, const SUMS: bool>(
        p: &Reduce,
        out: &mut [f32],
        i0: usize,
        j0: usize,
        sums: &mut [f32],
    ) {
        unsafe {
            let mut acc = [[_mm512_setzero_ps(); RK]; RM];
            let mut row_sum = [_mm512_setzero_ps(); RM];
            let a = p.a.as_ptr().add(i0 * p.n);
            let b = p.b.as_ptr().add(j0 * p.n);
            let mut step = |acc: &mut [[__m512; RK]; RM], c: usize, mask: u16| {
                let av: [__m512; RM] = std::array::from_fn(|i| _mm512_maskz_loadu_ps(mask, a.add(i * p.n + c)));
                if SUMS {
                    for i in 0..RM {
                        row_sum[i] = _mm512_add_ps(row_sum[i], av[i]);
                    }
                }
                for j in 0..RK {
                    let bv = _mm512_maskz_loadu_ps(mask, b.add(j * p.n + c));
                    for i in 0..RM {
                        acc[i][j] = _mm512_fmadd_ps(av[i], bv, acc[i][j]);
                    }
                }
            };
            let full = p.n / N * N;
            for c in (0..full).step_by(N) {
                step(&mut acc, c, u16::MAX);
            }
            if full < p.n {
                step(&mut acc, full, lanes_mask(full, p.n));
            }
            for (i, acc) in acc.iter().enumerate() {
                for (j, &v) in acc.iter().enumerate() {
                    out[(i0 + i) * p.k + j0 + j] += _mm512_reduce_add_ps(v);
                }
                if SUMS {
                    sums[i0 + i] += _mm512_reduce_add_ps(row_sum[i]);
                }
            }
        }
    }

    /// Every output of a reduce product in tiles of `RM × RK`, the edges in strips of
    /// `RM × 1` and `1 × RK` and a corner of single outputs; the row sums (when asked) ride
    /// along the first tile or strip of each row.
    ///
    /// # Safety
    /// AVX-512F and the shapes checked by the caller.
    #[inline(always)]
    unsafe fn reduce_tiles<const RM: usize, const RK: usize>(p: &Reduce, out: &mut [f32], row_sums: Option<&mut [f32]>) {
        let (full_m, full_k) = (p.m / RM * RM, p.k / RK * RK);
        let wanted = row_sums.is_some();
        let sums = row_sums.unwrap_or_default();
        unsafe {
            for i0 in (0..full_m).step_by(RM) {
                for j0 in (0..full_k).step_by(RK) {
                    if wanted && j0 == 0 {
                        reduce_tile::<RM, RK, true>(p, out, i0, j0, sums);
                    } else {
                        reduce_tile::<RM, RK, false>(p, out, i0, j0, sums);
                    }
                }
                for j in full_k..p.k {
                    if wanted && j == 0 {
                        reduce_tile::<RM, 1, true>(p, out, i0, j, sums);
                    } else {
                        reduce_tile::<RM, 1, false>(p, out, i0, j, sums);
                    }
                }
            }
            for i in full_m..p.m {
                for j0 in (0..full_k).step_by(RK) {
                    if wanted && j0 == 0 {
                        reduce_tile::<1, RK, true>(p, out, i, j0, sums);
                    } else {
                        reduce_tile::<1, RK, false>(p, out, i, j0, sums);
                    }
                }
                for j in full_k..p.k {
                    if wanted && j == 0 {
                        reduce_tile::<1, 1, true>(p, out, i, j, sums);
                    } else {
                        reduce_tile::<1, 1, false>(p, out, i, j, sums);
                    }
                }
            }
        }
    }

    /// A reduce product on AVX-512: tiles of 24 outputs (4 × 6, 6 × 4 or 3 × 8, whichever
    /// divides the shape, so that few outputs fall to the slower edge strips).
    ///
    /// # Safety
    /// AVX-512F and the shapes checked by the caller.
    #[target_feature(enable = "avx512f,avx512vl,avx2,fma")]
    pub(super) unsafe fn reduce_avx512(p: &Reduce, out: &mut [f32], row_sums: Option<&mut [f32]>) {
        let fits = |rm: usize, rk: usize| p.m.is_multiple_of(rm) && p.k.is_multiple_of(rk);
        unsafe {
            if fits(4, 6) {
                reduce_tiles::<4, 6>(p, out, row_sums)
            } else if fits(6, 4) {
                reduce_tiles::<6, 4>(p, out, row_sums)
            } else if fits(3, 8) {
                reduce_tiles::<3, 8>(p, out, row_sums)
            } else {
                reduce_tiles::<4, 6>(p, out, row_sums)
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn values(n: usize, seed: usize) -> Vec<f32> {
        (0..n).map(|i| ((i * 37 + seed * 11) % 23) as f32 * 0.25 - 2.5).collect()
    }

    #[test]
    fn broadcast_product_matches_the_formula_on_every_path() {
        for isa in Isa::supported() {
            // Tall and short, every row and column remainder, inner dimensions on both sides of
            // the tile switch, and a transposed left operand.
            for (m, n, k) in [(1, 1, 1), (7, 17, 3), (13, 64, 18), (256, 100, 18), (18, 70, 256), (25, 33, 97), (6, 129, 5)] {
                for transposed in [false, true] {
                    let (a_data, b, bias) = (values(m * k, 1), values(k * n, 2), values(m, 3));
                    let a = if transposed { Strided::transposed(&a_data, m) } else { Strided::rows(&a_data, k) };
                    for (with_bias, relu) in [(false, false), (true, false), (true, true)] {
                        let mut out = vec![f32::NAN; m * n];
                        let bias = with_bias.then_some(bias.as_slice());
                        isa::with_isa(isa, || broadcast_product(&mut out, a, &b, m, n, k, bias, relu));
                        for i in 0..m {
                            for c in 0..n {
                                let s = (0..k).map(|j| a.data[i * a.row + j * a.col] as f64 * b[j * n + c] as f64).sum::<f64>()
                                    + bias.map_or(0.0, |b| b[i] as f64);
                                let want = if relu { s.max(0.0) } else { s };
                                let got = out[i * n + c] as f64;
                                assert!(
                                    (got - want).abs() <= 1e-4 * (1.0 + want.abs()),
                                    "{isa:?} {m}x{n}x{k} t{transposed} ({i},{c}): {got} vs {want}"
                                );
                            }
                        }
                    }
                }
            }
        }
    }

    #[test]
    fn reduce_product_adds_the_formula_on_every_path() {
        for isa in Isa::supported() {
            for (m, k, n) in
                [(1, 1, 1), (4, 6, 16), (9, 13, 33), (256, 18, 1000), (36, 256, 70), (5, 7, 15), (6, 8, 20), (9, 16, 17), (7, 12, 40)]
            {
                let (a, b) = (values(m * n, 4), values(k * n, 5));
                let start = values(m * k, 6);
                let mut out = start.clone();
                let sums_start = values(m, 7);
                let mut sums = sums_start.clone();
                isa::with_isa(isa, || reduce_product(&mut out, &a, &b, m, k, n, Some(&mut sums)));
                let mut without = start.clone();
                isa::with_isa(isa, || reduce_product(&mut without, &a, &b, m, k, n, None));
                assert_eq!(out, without, "{isa:?} {m}x{k}x{n}: the row sums change the product");
                for i in 0..m {
                    let want = sums_start[i] as f64 + (0..n).map(|c| a[i * n + c] as f64).sum::<f64>();
                    assert!(
                        (sums[i] as f64 - want).abs() <= 1e-4 * (1.0 + want.abs()),
                        "{isa:?} {m}x{k}x{n} row sum {i}: {} vs {want}",
                        sums[i]
                    );
                }
                for i in 0..m {
                    for j in 0..k {
                        let want = start[i * k + j] as f64 + (0..n).map(|c| a[i * n + c] as f64 * b[j * n + c] as f64).sum::<f64>();
                        let got = out[i * k + j] as f64;
                        assert!((got - want).abs() <= 1e-4 * (1.0 + want.abs()), "{isa:?} {m}x{k}x{n} ({i},{j}): {got} vs {want}");
                    }
                }
            }
        }
    }
}
