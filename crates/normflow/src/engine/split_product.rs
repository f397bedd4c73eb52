//! Matrix products on AMX tiles with each `f32` operand split into two `bf16` parts, opt-in.
//!
//! Intel's AMX multiplies 16×32 by 32×16 tiles of `bf16` into 16×16 `f32` accumulators (the
//! instruction `TDPBF16PS`) an order of magnitude faster than AVX-512 multiplies `f32`. One
//! `bf16` keeps 8 bits of an `f32`'s 24, too few for a likelihood; two keep 16. Writing each
//! operand as `x = h + m` (`h` the `bf16` nearest `x`, `m` the one nearest `x − h`), the product
//! `A·B ≈ h_A·h_B + h_A·m_B + m_A·h_B` drops only `m_A·m_B` (below `2⁻¹⁶` of `|A|·|B|`) and the
//! rounding of `m` (below `2⁻¹⁷`), and sums in `f32`. Measured on 256³ products
//! (`bench/probes/amx_bf16x3.c`): error `1.5e-6` of `Σ|aᵢbᵢ|` against `2.2e-7` for a plain `f32`
//! loop and `7.5e-4` for one `bf16` product; on heavy-tailed operands (the tests) up to `1.5e-5`
//! against `4e-7`. The same trade is PyTorch's `"high"`
//! float32-matmul precision and JAX's `bfloat16_3x`.
//!
//! Values beyond `bf16`'s largest finite one (3.39e38, just under `f32`'s 3.40e38) would round
//! to infinity; NaN stays NaN.
//!
//! It is off unless asked for: [`set_product_precision`] for the process (or
//! `NORMFLOW_PRODUCTS=bf16x3` in the environment), [`with_product_precision`] for one call and
//! the work it hands to the worker pool. Where the CPU lacks AMX, or a product is too small for
//! tiles, products stay `f32`.
//!
//! Layout: each operand is packed per part into 16×16 tiles of dwords, a dword holding two
//! `bf16` adjacent along the inner dimension (the pairing `TDPBF16PS` multiplies), every tile
//! 1 KB and contiguous, tiles in the order the product walks them. Products run in blocks of
//! 32×32 outputs (four accumulator tiles, two tiles of each operand), the three part products
//! summed in the accumulators, then added to or copied into the output.

use super::pool;
use std::cell::Cell;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::OnceLock;

/// How the engine computes its `f32` matrix products.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProductPrecision {
    /// `f32` multiplies and sums (the `gemm` crate or the engine's own kernels): the default.
    F32,
    /// Each operand split into two `bf16` parts, three tile products summed in `f32` on AMX
    /// (error 7–40× a plain `f32` sum's, at most about 2⁻¹⁵ of the sum of the terms'
    /// magnitudes: see the module docs); `f32` where AMX is missing.
    Bf16x3,
}

impl ProductPrecision {
    /// The name `NORMFLOW_PRODUCTS` and the command-line flags take.
    pub fn name(self) -> &'static str {
        match self {
            ProductPrecision::F32 => "f32",
            ProductPrecision::Bf16x3 => "bf16x3",
        }
    }

    /// The precision called `name` (`f32` or `bf16x3`), if any.
    pub fn from_name(name: &str) -> Option<Self> {
        [ProductPrecision::F32, ProductPrecision::Bf16x3].into_iter().find(|p| p.name() == name.trim())
    }
}

/// The process's setting: 0 not read yet, then 1 + the index of the precision.
static PROCESS: AtomicU8 = AtomicU8::new(0);

fn encode(p: ProductPrecision) -> u8 {
    match p {
        ProductPrecision::F32 => 1,
        ProductPrecision::Bf16x3 => 2,
    }
}

/// Sets the precision of every later product in the process (unless a thread overrides it with
/// [`with_product_precision`]).
pub fn set_product_precision(p: ProductPrecision) {
    PROCESS.store(encode(p), Ordering::Relaxed);
}

thread_local! {
    /// This thread's override, set by [`with_product_precision`].
    static THREAD: Cell<Option<ProductPrecision>> = const { Cell::new(None) };
}

/// The precision products called on this thread run with: the thread's override, else the
/// process's setting (first read from `NORMFLOW_PRODUCTS`, `f32` when unset or unknown).
pub fn product_precision() -> ProductPrecision {
    if let Some(p) = THREAD.with(Cell::get) {
        return p;
    }
    match PROCESS.load(Ordering::Relaxed) {
        1 => ProductPrecision::F32,
        2 => ProductPrecision::Bf16x3,
        _ => {
            let p = std::env::var("NORMFLOW_PRODUCTS").ok().and_then(|v| ProductPrecision::from_name(&v)).unwrap_or(ProductPrecision::F32);
            let _ = PROCESS.compare_exchange(0, encode(p), Ordering::Relaxed, Ordering::Relaxed);
            p
        }
    }
}

/// Runs `f` with products at precision `p`, on this thread and in the work it hands to the
/// worker pool.
pub fn with_product_precision<R>(p: ProductPrecision, f: impl FnOnce() -> R) -> R {
    struct Restore(Option<ProductPrecision>);
    impl Drop for Restore {
        fn drop(&mut self) {
            THREAD.with(|t| t.set(self.0));
        }
    }
    let _restore = Restore(THREAD.with(|t| t.replace(Some(p))));
    f()
}

/// Whether this CPU and operating system run AMX `bf16` tiles (asks Linux for the tile state
/// once per process).
pub fn split_products_available() -> bool {
    static AVAILABLE: OnceLock<bool> = OnceLock::new();
    *AVAILABLE.get_or_init(amx::enable)
}

/// `bf16` multiply-adds (FLOPs, two per multiply-add) of one [`tile_products`] round: four
/// 16×16 accumulators, each gaining a 16×32 by 32×16 product.
#[cfg(feature = "bench")]
pub(crate) const TILE_ROUND_FLOP: f64 = 4.0 * 2.0 * 16.0 * 16.0 * 32.0;

/// Runs `rounds` rounds of four tile products of all-ones tiles on registers only (no loads
/// but the first): the AMX unit's own limit, for the probes. Returns an entry of the first
/// accumulator (`32 · rounds`), or `None` where AMX is not there.
#[cfg(feature = "bench")]
pub(crate) fn tile_products(rounds: usize) -> Option<f32> {
    split_products_available().then(|| amx::tile_products(rounds))
}

/// Smallest inner dimension worth tiles: the inner dimension is padded to 32.
const MIN_INNER: usize = 32;
/// Smallest output side worth the split: packing costs in proportion to `k·(m + n)`, the
/// product to `k·m·n`, so a narrow product pays the packing of its wide operand for little
/// work. Products 64 wide (a MADE's masked blocks at size L: `512×64×449`) ran 1.1–1.9× the
/// `f32` rate alone, repeated on warm operands, but slowed MAF L's training step inside it
/// (66–69 → 78 ms: each masked block packs its slice of the layer's input afresh); 127 and
/// wider ran 1.6–2.6× alone (one thread: 512³ 397–416 against 158–172 GFLOP/s, 256³ 313 against
/// 159) and gained in every workload.
const MIN_SIDE: usize = 96;

/// `out[m×n] (+)= A · B` at split-`bf16` precision when that is the precision asked for, AMX is
/// there and the shape is worth tiles; `false` (and nothing written) otherwise. `A` is `m×k`
/// and `B` `k×n`, each given as (buffer, column stride, row stride); `out` rows are `ldo` apart.
#[allow(clippy::too_many_arguments)]
pub(crate) fn try_product(
    out: &mut [f32],
    ldo: usize,
    a: (&[f32], isize, isize),
    b: (&[f32], isize, isize),
    m: usize,
    n: usize,
    k: usize,
    accumulate: bool,
) -> bool {
    if !wanted(m, n, k) {
        return false;
    }
    let strides = [a.1, a.2, b.1, b.2];
    if strides.iter().any(|&s| s < 0) {
        return false;
    }
    let [a_cs, a_rs, b_cs, b_rs] = strides.map(|s| s as usize);
    // A's outer index is its row, B's its column.
    let a = Operand { data: a.0, outer_step: a_rs, inner_step: a_cs, outer: m, inner: k };
    let b = Operand { data: b.0, outer_step: b_cs, inner_step: b_rs, outer: n, inner: k };
    amx::product(out, ldo, &a, &b, accumulate);
    true
}

/// A layer's weight `W` (`[n, k]`, row-major) packed once as the right factor of `x · Wᵀ`, for
/// callers that multiply many row blocks by the same weight (an ODE solver's field
/// evaluations, inference over many blocks): each [`PackedWeight::product`] then packs only its
/// rows.
#[derive(Debug)]
pub(crate) struct PackedWeight {
    tiles: pool::LineBuf,
    n: usize,
    k: usize,
}

impl PackedWeight {
    /// `w` packed, when products on this thread run split and the shape is worth it for blocks
    /// of at least `rows` rows; `None` otherwise (use the `f32` products).
    pub(crate) fn new(w: &[f32], n: usize, k: usize, rows: usize) -> Option<Self> {
        if !wanted(rows, n, k) {
            return None;
        }
        let b = Operand { data: &w[..n * k], outer_step: k, inner_step: 1, outer: n, inner: k };
        let mut tiles = pool::LineBuf::scratch(amx::right_len(n, k));
        // SAFETY: u32 and f32 have one size and alignment; every bit pattern is valid for both.
        let words = unsafe { std::slice::from_raw_parts_mut(tiles.as_mut_ptr().cast::<u32>(), tiles.len()) };
        amx::pack_right(&b, words);
        Some(Self { tiles, n, k })
    }

    /// `out[m×n] = x · Wᵀ` for `m` rows of `x` (`k` wide, rows `ldx` apart); `false` (nothing
    /// written) when `m` is below the split's least side or products on this thread run `f32`
    /// now: use the `f32` product for that block.
    pub(crate) fn product(&self, out: &mut [f32], x: &[f32], ldx: usize, m: usize) -> bool {
        if m < MIN_SIDE || product_precision() != ProductPrecision::Bf16x3 {
            return false;
        }
        assert!(ldx >= self.k && x.len() >= (m - 1) * ldx + self.k && out.len() >= m * self.n, "blocks shorter than their shape");
        let a = Operand { data: x, outer_step: ldx, inner_step: 1, outer: m, inner: self.k };
        // SAFETY: as in `new`.
        let words = unsafe { std::slice::from_raw_parts(self.tiles.as_ptr().cast::<u32>(), self.tiles.len()) };
        super::matmul::instrumented(|| amx::product_packed(out, self.n, &a, words, self.n, false));
        true
    }
}

/// Whether a product of this shape runs split on this thread.
fn wanted(m: usize, n: usize, k: usize) -> bool {
    product_precision() == ProductPrecision::Bf16x3 && k >= MIN_INNER && m >= MIN_SIDE && n >= MIN_SIDE && split_products_available()
}

/// One factor of a product seen as `outer × inner`: element `(o, i)` at
/// `data[o·outer_step + i·inner_step]`.
struct Operand<'a> {
    data: &'a [f32],
    outer_step: usize,
    inner_step: usize,
    outer: usize,
    inner: usize,
}

/// Dwords per 16×16 tile.
const TILE: usize = 256;

#[cfg(all(target_arch = "x86_64", target_os = "linux"))]
mod amx {
    use super::{Operand, TILE};
    use crate::engine::pool;
    use std::arch::asm;
    use std::arch::x86_64::*;

    /// Asks Linux for the AMX tile state for this process; whether the CPU has AMX with `bf16`
    /// and the request was granted.
    pub(super) fn enable() -> bool {
        // CPUID leaf 7: EDX bit 24 AMX-TILE, bit 22 AMX-BF16; the packing needs AVX-512.
        let leaf7 = std::arch::x86_64::__cpuid_count(7, 0);
        if leaf7.edx & (1 << 24) == 0 || leaf7.edx & (1 << 22) == 0 || crate::engine::isa::Isa::detect() != crate::engine::isa::Isa::Avx512
        {
            return false;
        }
        const ARCH_PRCTL: i64 = 158;
        const ARCH_REQ_XCOMP_PERM: i64 = 0x1023;
        const XFEATURE_XTILEDATA: i64 = 18;
        let ret: i64;
        // SAFETY: the arch_prctl system call with ARCH_REQ_XCOMP_PERM only asks the kernel to
        // let this process use the tile state; it reads no memory. The syscall instruction
        // clobbers rcx and r11, declared here.
        unsafe {
            asm!("syscall", inlateout("rax") ARCH_PRCTL => ret, in("rdi") ARCH_REQ_XCOMP_PERM, in("rsi") XFEATURE_XTILEDATA,
                 lateout("rcx") _, lateout("r11") _, options(nostack));
        }
        ret == 0
    }

    /// Up to 16 values of `op` from `start`, `step` apart (`count` of them, zeros after).
    ///
    /// # Safety
    /// The CPU must have AVX-512 F.
    #[inline]
    #[target_feature(enable = "avx512f")]
    unsafe fn load16(op: &Operand, start: usize, step: usize, count: usize) -> __m512 {
        if count == 0 {
            return _mm512_setzero_ps();
        }
        if step == 1 {
            let _ = &op.data[start..start + count];
            // SAFETY: the lanes read are inside `data` (checked just above); masked-off
            // lanes are not read.
            return unsafe { _mm512_maskz_loadu_ps(((1u32 << count) - 1) as u16, op.data.as_ptr().add(start)) };
        }
        let mut v = [0.0f32; 16];
        for (t, slot) in v.iter_mut().enumerate().take(count) {
            *slot = op.data[start + t * step];
        }
        // SAFETY: reads the 16 values of `v`.
        unsafe { _mm512_loadu_ps(v.as_ptr()) }
    }

    /// Each value rounded to the nearest `bf16` (`h`), and what it leaves rounded likewise
    /// (`m`), both kept in the high half of each 32-bit lane, the low half zero.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn split(x: __m512) -> (__m512i, __m512i) {
        #[inline]
        #[target_feature(enable = "avx512f")]
        fn round(bits: __m512i) -> __m512i {
            let odd = _mm512_and_si512(_mm512_srli_epi32::<16>(bits), _mm512_set1_epi32(1));
            let up = _mm512_add_epi32(bits, _mm512_add_epi32(odd, _mm512_set1_epi32(0x7fff)));
            _mm512_and_si512(up, _mm512_set1_epi32(0xffff_0000u32 as i32))
        }
        let h = round(_mm512_castps_si512(x));
        let rest = _mm512_sub_ps(x, _mm512_castsi512_ps(h));
        (h, round(_mm512_castps_si512(rest)))
    }

    /// Transposes a 16×16 matrix of dwords held one row per register.
    #[inline]
    #[target_feature(enable = "avx512f")]
    fn transpose(r: &mut [__m512i; 16]) {
        // Pairs of rows interleaved by dword, then by quad-word: register 4i+j then holds, in
        // each 128-bit lane L, rows 4i…4i+3 of column 4L+j.
        let mut t = [_mm512_setzero_si512(); 16];
        for i in 0..8 {
            t[2 * i] = _mm512_unpacklo_epi32(r[2 * i], r[2 * i + 1]);
            t[2 * i + 1] = _mm512_unpackhi_epi32(r[2 * i], r[2 * i + 1]);
        }
        let mut u = [_mm512_setzero_si512(); 16];
        for i in 0..4 {
            u[4 * i] = _mm512_unpacklo_epi64(t[4 * i], t[4 * i + 2]);
            u[4 * i + 1] = _mm512_unpackhi_epi64(t[4 * i], t[4 * i + 2]);
            u[4 * i + 2] = _mm512_unpacklo_epi64(t[4 * i + 1], t[4 * i + 3]);
            u[4 * i + 3] = _mm512_unpackhi_epi64(t[4 * i + 1], t[4 * i + 3]);
        }
        // Column 4L+j gathers lane L of registers j, 4+j, 8+j, 12+j.
        for j in 0..4 {
            let v0 = _mm512_shuffle_i32x4::<0x44>(u[j], u[4 + j]);
            let v1 = _mm512_shuffle_i32x4::<0xee>(u[j], u[4 + j]);
            let w0 = _mm512_shuffle_i32x4::<0x44>(u[8 + j], u[12 + j]);
            let w1 = _mm512_shuffle_i32x4::<0xee>(u[8 + j], u[12 + j]);
            r[j] = _mm512_shuffle_i32x4::<0x88>(v0, w0);
            r[4 + j] = _mm512_shuffle_i32x4::<0xdd>(v0, w0);
            r[8 + j] = _mm512_shuffle_i32x4::<0x88>(v1, w1);
            r[12 + j] = _mm512_shuffle_i32x4::<0xdd>(v1, w1);
        }
    }

    /// Packs `op` into `tiles` (both parts: the `h` tiles, then the `m` tiles, each in order of
    /// outer block then inner block), each tile `[outer][pair]` for the left factor (`left`)
    /// and `[pair][outer]` for the right one; zeros past the operand's edges (`outer_blocks` may
    /// exceed its own).
    ///
    /// # Safety
    /// The CPU must have AVX-512 F and BW (every CPU with AMX has).
    #[target_feature(enable = "avx512f,avx512bw")]
    unsafe fn pack(op: &Operand, tiles: &mut [u32], outer_blocks: usize, inner_blocks: usize, left: bool) {
        let part = outer_blocks * inner_blocks * TILE;
        let (hs, ms) = tiles[..2 * part].split_at_mut(part);
        // Read along whichever stride is unit: rows of the tile by outer index when the inner
        // one is contiguous (or neither is), else by pair; transpose when that is not the
        // orientation the factor needs.
        let by_outer = op.inner_step == 1 || op.outer_step != 1;
        // The high (odd) words of two registers, in order: bf16 values in a row.
        let odd_words = _mm512_set_epi16(
            63, 61, 59, 57, 55, 53, 51, 49, 47, 45, 43, 41, 39, 37, 35, 33, 31, 29, 27, 25, 23, 21, 19, 17, 15, 13, 11, 9, 7, 5, 3, 1,
        );
        let (mut h, mut m) = ([_mm512_setzero_si512(); 16], [_mm512_setzero_si512(); 16]);
        // Tiles in the order that reads the source along its rows: by outer block first when
        // reading by outer (16 sequential streams), by inner block first when reading by pair
        // (rows 32 at a time, whole): walking down a column of 64-byte pieces instead ran at
        // memory latency.
        let (first, second) = if by_outer { (outer_blocks, inner_blocks) } else { (inner_blocks, outer_blocks) };
        for (ob, ib) in (0..first).flat_map(|f| (0..second).map(move |s| if by_outer { (f, s) } else { (s, f) })) {
            {
                let (o0, outers) = (ob * 16, op.outer.saturating_sub(ob * 16).min(16));
                let (i0, inners) = (ib * 32, op.inner.saturating_sub(ib * 32).min(32));
                for r in 0..16 {
                    let (x0, x1) = if by_outer {
                        // Row r: outer o0 + r, 32 inner values.
                        let (count, start) = (if r < outers { inners } else { 0 }, (o0 + r) * op.outer_step + i0 * op.inner_step);
                        // SAFETY: AVX-512 F is enabled here; load16 stays inside the data.
                        unsafe {
                            (
                                load16(op, start, op.inner_step, count.min(16)),
                                load16(op, start + 16 * op.inner_step, op.inner_step, count.saturating_sub(16)),
                            )
                        }
                    } else {
                        // Row r: pair r, two inner rows of 16 outer values.
                        let count = |i: usize| if i < inners { outers } else { 0 };
                        let start = |i: usize| o0 * op.outer_step + (i0 + i) * op.inner_step;
                        // SAFETY: as above.
                        unsafe {
                            (
                                load16(op, start(2 * r), op.outer_step, count(2 * r)),
                                load16(op, start(2 * r + 1), op.outer_step, count(2 * r + 1)),
                            )
                        }
                    };
                    let ((h0, m0), (h1, m1)) = (split(x0), split(x1));
                    if by_outer {
                        h[r] = _mm512_permutex2var_epi16(h0, odd_words, h1);
                        m[r] = _mm512_permutex2var_epi16(m0, odd_words, m1);
                    } else {
                        h[r] = _mm512_or_si512(_mm512_srli_epi32::<16>(h0), h1);
                        m[r] = _mm512_or_si512(_mm512_srli_epi32::<16>(m0), m1);
                    }
                }
                if by_outer != left {
                    transpose(&mut h);
                    transpose(&mut m);
                }
                let at = (ob * inner_blocks + ib) * TILE;
                let (th, tm) = (&mut hs[at..at + TILE], &mut ms[at..at + TILE]);
                for r in 0..16 {
                    // SAFETY: each store writes 16 dwords inside the tile's 256 (sliced above).
                    unsafe {
                        _mm512_storeu_si512(th.as_mut_ptr().add(16 * r).cast(), h[r]);
                        _mm512_storeu_si512(tm.as_mut_ptr().add(16 * r).cast(), m[r]);
                    }
                }
            }
        }
    }

    /// The tile configuration: palette 1, tiles 0–7 of 16 rows × 64 bytes.
    #[repr(C, align(64))]
    struct TileConfig([u8; 64]);

    impl TileConfig {
        fn full() -> Self {
            let mut c = [0u8; 64];
            c[0] = 1;
            for t in 0..8 {
                c[16 + 2 * t] = 64;
                c[48 + t] = 16;
            }
            TileConfig(c)
        }
    }

    /// `rounds` rounds of four tile products of all-ones tiles loaded once; an entry of the
    /// first accumulator.
    #[cfg(feature = "bench")]
    pub(super) fn tile_products(rounds: usize) -> f32 {
        let config = TileConfig::full();
        let ones = vec![0x3f80_3f80u32; TILE];
        let mut first = [0.0f32; TILE];
        // SAFETY: AMX is enabled (`enable` said yes before the caller got here); each load reads
        // one 1 KB tile of `ones`, the store writes one to `first`; the products touch
        // registers only.
        unsafe {
            asm!("ldtilecfg [{0}]", in(reg) config.0.as_ptr(), options(nostack, readonly));
            asm!("tilezero tmm0", "tilezero tmm1", "tilezero tmm2", "tilezero tmm3", options(nostack, nomem));
            asm!(
                "tileloadd tmm4, [{p} + {s}*1]", "tileloadd tmm5, [{p} + {s}*1]",
                "tileloadd tmm6, [{p} + {s}*1]", "tileloadd tmm7, [{p} + {s}*1]",
                p = in(reg) ones.as_ptr(), s = in(reg) 64usize, options(nostack, readonly),
            );
            for _ in 0..rounds {
                asm!(
                    "tdpbf16ps tmm0, tmm4, tmm6",
                    "tdpbf16ps tmm1, tmm4, tmm7",
                    "tdpbf16ps tmm2, tmm5, tmm6",
                    "tdpbf16ps tmm3, tmm5, tmm7",
                    options(nostack, nomem),
                );
            }
            asm!("tilestored [{p} + {s}*1], tmm0", p = in(reg) first.as_mut_ptr(), s = in(reg) 64usize, options(nostack));
            asm!("tilerelease", options(nostack, nomem));
        }
        first[0]
    }

    /// `out[m×n] (+)= A·B`, `A` the left operand (`m = a.outer`), `B` the right (`n = b.outer`).
    pub(super) fn product(out: &mut [f32], ldo: usize, a: &Operand, b: &Operand, accumulate: bool) {
        let mut right = pool::LineBuf::scratch(right_len(b.outer, b.inner));
        pack_right(b, words(&mut right));
        product_packed(out, ldo, a, words(&mut right), b.outer, accumulate);
    }

    /// `f32` buffer as the `u32` words of packed tiles.
    fn words(buf: &mut [f32]) -> &mut [u32] {
        // SAFETY: u32 and f32 have one size and alignment; every bit pattern is valid for both.
        unsafe { std::slice::from_raw_parts_mut(buf.as_mut_ptr().cast::<u32>(), buf.len()) }
    }

    /// Words of a right operand `n` wide over `k` packed: both parts, whole 32-wide blocks.
    pub(super) fn right_len(n: usize, k: usize) -> usize {
        2 * (2 * n.div_ceil(32)) * k.div_ceil(32) * TILE
    }

    /// Packs `b` as a right operand into `tiles` ([`right_len`] words).
    pub(super) fn pack_right(b: &Operand, tiles: &mut [u32]) {
        // SAFETY: AMX came with AVX-512 on every CPU that has it.
        unsafe { pack(b, tiles, 2 * b.outer.div_ceil(32), b.inner.div_ceil(32), false) };
    }

    /// `out[m×n] (+)= A·B` with `B` already packed by [`pack_right`] (`n` wide, over `a.inner`).
    pub(super) fn product_packed(out: &mut [f32], ldo: usize, a: &Operand, b_tiles: &[u32], n: usize, accumulate: bool) {
        let (m, k) = (a.outer, a.inner);
        // Outputs in blocks of 32 (two tiles); the inner dimension in blocks of 32.
        let (row_blocks, col_blocks, inner_blocks) = (m.div_ceil(32), n.div_ceil(32), k.div_ceil(32));
        let (a_len, b_len) = (2 * (2 * row_blocks) * inner_blocks * TILE, right_len(n, k));
        assert!(b_tiles.len() >= b_len, "packed right operand shorter than its shape");
        let mut left = pool::LineBuf::scratch(a_len);
        let a_tiles = words(&mut left);
        // SAFETY: AMX came with AVX-512 on every CPU that has it.
        unsafe { pack(a, a_tiles, 2 * row_blocks, inner_blocks, true) };
        let (a_part, b_part) = (a_len / 2, b_len / 2);
        let (a_ptr, b_ptr) = (a_tiles.as_ptr(), b_tiles.as_ptr());
        let mut block = [0.0f32; 32 * 32];
        let config = TileConfig::full();
        // SAFETY: the CPU has AMX (checked by `enable` before any caller gets here) and the
        // configuration is valid; every tile load below reads 16 rows of 64 bytes inside the
        // packed buffers (tile offsets stay below the part lengths), every store writes 16 rows
        // of 64 bytes inside `block` (128 bytes per row, two tiles side by side).
        unsafe {
            asm!("ldtilecfg [{0}]", in(reg) config.0.as_ptr(), options(nostack, readonly));
            for rb in 0..row_blocks {
                let a0 = a_ptr.add(2 * rb * inner_blocks * TILE);
                let a1 = a0.add(inner_blocks * TILE);
                for cb in 0..col_blocks {
                    let b0 = b_ptr.add(2 * cb * inner_blocks * TILE);
                    let b1 = b0.add(inner_blocks * TILE);
                    asm!("tilezero tmm0", "tilezero tmm1", "tilezero tmm2", "tilezero tmm3", options(nostack, nomem));
                    // Per inner block h·h, then h·m (the h tiles of A kept), then m·h: ten tile
                    // loads for twelve products, the h tiles of B loaded twice within a few
                    // hundred cycles (from L1).
                    for ib in 0..inner_blocks {
                        let at = ib * TILE;
                        asm!(
                            "tileloadd tmm4, [{ah0} + {s}*1]",
                            "tileloadd tmm6, [{bh0} + {s}*1]",
                            "tdpbf16ps tmm0, tmm4, tmm6",
                            "tileloadd tmm7, [{bh1} + {s}*1]",
                            "tdpbf16ps tmm1, tmm4, tmm7",
                            "tileloadd tmm5, [{ah1} + {s}*1]",
                            "tdpbf16ps tmm2, tmm5, tmm6",
                            "tdpbf16ps tmm3, tmm5, tmm7",
                            "tileloadd tmm6, [{bm0} + {s}*1]",
                            "tdpbf16ps tmm0, tmm4, tmm6",
                            "tileloadd tmm7, [{bm1} + {s}*1]",
                            "tdpbf16ps tmm1, tmm4, tmm7",
                            "tdpbf16ps tmm2, tmm5, tmm6",
                            "tdpbf16ps tmm3, tmm5, tmm7",
                            "tileloadd tmm4, [{am0} + {s}*1]",
                            "tileloadd tmm6, [{bh0} + {s}*1]",
                            "tdpbf16ps tmm0, tmm4, tmm6",
                            "tileloadd tmm7, [{bh1} + {s}*1]",
                            "tdpbf16ps tmm1, tmm4, tmm7",
                            "tileloadd tmm5, [{am1} + {s}*1]",
                            "tdpbf16ps tmm2, tmm5, tmm6",
                            "tdpbf16ps tmm3, tmm5, tmm7",
                            ah0 = in(reg) a0.add(at), ah1 = in(reg) a1.add(at),
                            am0 = in(reg) a0.add(a_part + at), am1 = in(reg) a1.add(a_part + at),
                            bh0 = in(reg) b0.add(at), bh1 = in(reg) b1.add(at),
                            bm0 = in(reg) b0.add(b_part + at), bm1 = in(reg) b1.add(b_part + at),
                            s = in(reg) 64usize, options(nostack, readonly),
                        );
                    }
                    let c = block.as_mut_ptr();
                    asm!(
                        "tilestored [{c0} + {s}*1], tmm0",
                        "tilestored [{c1} + {s}*1], tmm1",
                        "tilestored [{c2} + {s}*1], tmm2",
                        "tilestored [{c3} + {s}*1], tmm3",
                        c0 = in(reg) c, c1 = in(reg) c.add(16), c2 = in(reg) c.add(16 * 32), c3 = in(reg) c.add(16 * 32 + 16),
                        s = in(reg) 128usize, options(nostack),
                    );
                    let (r0, c0) = (rb * 32, cb * 32);
                    let cols = (n - c0).min(32);
                    for r in 0..(m - r0).min(32) {
                        let dst = &mut out[(r0 + r) * ldo + c0..(r0 + r) * ldo + c0 + cols];
                        let src = &block[r * 32..r * 32 + cols];
                        if accumulate {
                            dst.iter_mut().zip(src).for_each(|(d, s)| *d += s);
                        } else {
                            dst.copy_from_slice(src);
                        }
                    }
                }
            }
            asm!("tilerelease", options(nostack, nomem));
        }
    }
}

#[cfg(not(all(target_arch = "x86_64", target_os = "linux")))]
mod amx {
    use super::Operand;

    /// No AMX off Linux on x86-64.
    pub(super) fn enable() -> bool {
        false
    }

    /// Never called: [`enable`] said no.
    #[cfg(feature = "bench")]
    pub(super) fn tile_products(_: usize) -> f32 {
        unreachable!("tile products run only where AMX is enabled")
    }

    /// Never called: [`enable`] said no.
    pub(super) fn product(_: &mut [f32], _: usize, _: &Operand, _: &Operand, _: bool) {
        unreachable!("split products run only where AMX is enabled")
    }

    /// Never called: [`enable`] said no.
    pub(super) fn right_len(_: usize, _: usize) -> usize {
        unreachable!("split products run only where AMX is enabled")
    }

    /// Never called: [`enable`] said no.
    pub(super) fn pack_right(_: &Operand, _: &mut [u32]) {
        unreachable!("split products run only where AMX is enabled")
    }

    /// Never called: [`enable`] said no.
    pub(super) fn product_packed(_: &mut [f32], _: usize, _: &Operand, _: &[u32], _: usize, _: bool) {
        unreachable!("split products run only where AMX is enabled")
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::{block_product, Block, Product, Rng};

    /// Worst `|got − exact| / Σ|aᵢbᵢ|` of a product kind at one shape, with exact sums in f64.
    fn worst_error(kind: Product, m: usize, n: usize, k: usize, accumulate: bool, precision: ProductPrecision) -> f64 {
        let mut rng = Rng::new((m * 1000 + n * 10 + k) as u64);
        let (a_rows, a_cols, b_rows, b_cols) = match kind {
            Product::ABt => (m, k, n, k),
            Product::AB => (m, k, k, n),
            Product::AtB => (k, m, k, n),
        };
        // Operands as blocks of wider matrices (3 spare columns), values of mixed scale.
        let (lda, ldb, ldo) = (a_cols + 3, b_cols + 3, n + 3);
        let mut draw = |len: usize| -> Vec<f32> { (0..len).map(|i| (rng.normal() * if i % 5 == 0 { 10.0 } else { 0.3 }) as f32).collect() };
        let (a, b, start) = (draw(a_rows * lda), draw(b_rows * ldb), draw(m * ldo));
        let mut out = start.clone();
        with_product_precision(precision, || {
            block_product(kind, &mut out, ldo, Block { data: &a, ld: lda }, Block { data: &b, ld: ldb }, m, n, k, accumulate)
        });
        let at = |i: usize, p: usize| {
            f64::from(match kind {
                Product::AtB => a[p * lda + i],
                _ => a[i * lda + p],
            })
        };
        let bt = |p: usize, j: usize| {
            f64::from(match kind {
                Product::ABt => b[j * ldb + p],
                _ => b[p * ldb + j],
            })
        };
        let mut worst = 0.0f64;
        for i in 0..m {
            for j in 0..n {
                let (mut exact, mut scale) = (if accumulate { f64::from(start[i * ldo + j]) } else { 0.0 }, 0.0);
                for p in 0..k {
                    exact += at(i, p) * bt(p, j);
                    scale += (at(i, p) * bt(p, j)).abs();
                }
                worst = worst.max((f64::from(out[i * ldo + j]) - exact).abs() / scale.max(1e-30));
            }
            // The spare columns of the output are untouched.
            assert_eq!(&out[i * ldo + n..i * ldo + ldo], &start[i * ldo + n..i * ldo + ldo]);
        }
        worst
    }

    #[test]
    fn split_products_are_within_bf16x3_error_of_exact_on_every_kind_and_edge() {
        let amx = split_products_available();
        for kind in [Product::ABt, Product::AB, Product::AtB] {
            // Sides at the split's least (96), ragged against the 32-wide blocks, inner
            // dimensions past one block and short of two.
            for (m, n, k) in [(96, 96, 32), (101, 130, 70), (128, 97, 256), (200, 99, 40)] {
                for accumulate in [false, true] {
                    let split = worst_error(kind, m, n, k, accumulate, ProductPrecision::Bf16x3);
                    let plain = worst_error(kind, m, n, k, accumulate, ProductPrecision::F32);
                    // Two bf16 parts keep 16 bits: each term errs by at most about 2⁻¹⁵ of its
                    // size (the dropped m·m and the rounding of m), so the sum by less than
                    // 4e-5 of Σ|terms| (one bf16 part alone: 2⁻⁸, 4e-3); f32 a few 1e-7.
                    // Without AMX both are f32.
                    eprintln!("{kind:?} {m}x{n}x{k} accumulate {accumulate}: split {split:.2e} f32 {plain:.2e}");
                    assert!(split < 4e-5, "{kind:?} {m}x{n}x{k} accumulate {accumulate}: error {split:e}");
                    assert!(plain < 1e-6, "{kind:?} {m}x{n}x{k}: f32 error {plain:e}");
                    if amx {
                        // The split path ran: its error is well above f32's.
                        assert!(split > 3.0 * plain, "{kind:?} {m}x{n}x{k}: split error {split:e} vs f32 {plain:e}");
                    } else {
                        assert_eq!(split, plain, "without AMX the split precision falls back to f32");
                    }
                }
            }
        }
    }

    #[cfg(feature = "bench")]
    #[test]
    fn the_peak_probe_multiplies_its_tiles() {
        // Each round adds 32 products of one by one to every accumulator entry.
        let expected = split_products_available().then_some(32.0 * 10.0);
        assert_eq!(tile_products(10), expected);
    }

    #[test]
    fn a_weight_packed_once_gives_the_products_of_packing_it_each_time() {
        let (n, k) = (130, 70);
        let mut rng = Rng::new(9);
        let w: Vec<f32> = (0..n * k).map(|_| rng.normal() as f32).collect();
        let x: Vec<f32> = (0..300 * (k + 2)).map(|_| rng.normal() as f32).collect();
        assert!(
            with_product_precision(ProductPrecision::F32, || PackedWeight::new(&w, n, k, 256)).is_none(),
            "f32 products need no packing"
        );
        with_product_precision(ProductPrecision::Bf16x3, || {
            let Some(packed) = PackedWeight::new(&w, n, k, 256) else {
                assert!(!split_products_available(), "with AMX a 256-row block of this shape splits");
                return;
            };
            // Row blocks of a wider matrix (k + 2 columns), one below the split's least side.
            for m in [256, 97, 40] {
                let mut once = vec![f32::NAN; m * n];
                if !packed.product(&mut once, &x, k + 2, m) {
                    assert!(m < MIN_SIDE, "{m} rows should split");
                    continue;
                }
                let mut each = vec![0.0; m * n];
                block_product(Product::ABt, &mut each, n, Block { data: &x, ld: k + 2 }, Block { data: &w, ld: k }, m, n, k, false);
                assert_eq!(once, each, "{m} rows");
            }
        });
    }

    #[test]
    fn precision_names_round_trip_and_the_override_reaches_the_worker_pool() {
        for p in [ProductPrecision::F32, ProductPrecision::Bf16x3] {
            assert_eq!(ProductPrecision::from_name(p.name()), Some(p));
        }
        assert_eq!(ProductPrecision::from_name("fp8"), None);
        let seen = std::sync::Mutex::new(Vec::new());
        with_product_precision(ProductPrecision::Bf16x3, || {
            crate::engine::threads::for_each_part(2, &|_| seen.lock().unwrap().push(product_precision()));
        });
        assert_eq!(*seen.lock().unwrap(), vec![ProductPrecision::Bf16x3; 2]);
    }
}
