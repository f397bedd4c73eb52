//! Matrix products on AMX tiles with each `f32` operand split into two `bf16` parts: the default
//! where the CPU has AMX.
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
//! It is on by default where the CPU and Linux run AMX tiles, for products at least
//! 96 wide on an output side (and 32 deep); elsewhere products stay `f32`. The error is
//! about `2⁻¹⁶` of the sum of the terms' magnitudes, the size of the worst case of a plain `f32`
//! sum of 256 terms (`256 · 2⁻²⁴`) though well above its typical error, and far below the
//! noise of stochastic training: a RealNVP learns as well (`tests/split_products.rs`: test NLL 3.039 against 3.026)
//! and one model's log-densities move by at most `2e-4` nats. `f32` everywhere is one call away:
//! [`set_product_precision`] for the process (or `NORMFLOW_PRODUCTS=f32` in the environment),
//! [`with_product_precision`] for one call and the work it hands to the worker pool.
//!
//! The tiles themselves (packing, kernel) are in `amx`.

use super::amx::{self, Operand};
use super::pool;
use std::cell::Cell;
use std::sync::atomic::{AtomicU8, Ordering};
use std::sync::OnceLock;

/// How the engine computes its `f32` matrix products.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum ProductPrecision {
    /// `f32` multiplies and sums (the `gemm` crate or the engine's own kernels).
    F32,
    /// Each operand split into two `bf16` parts, three tile products summed in `f32` on AMX
    /// (error 7–40× a plain `f32` sum's, at most about 2⁻¹⁵ of the sum of the terms'
    /// magnitudes: see the module docs); `f32` where AMX is missing. The default.
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
/// process's setting (first read from `NORMFLOW_PRODUCTS`; [`ProductPrecision::Bf16x3`] when
/// unset or unknown, which runs `f32` products where the CPU lacks AMX).
pub fn product_precision() -> ProductPrecision {
    if let Some(p) = THREAD.with(Cell::get) {
        return p;
    }
    match PROCESS.load(Ordering::Relaxed) {
        1 => ProductPrecision::F32,
        2 => ProductPrecision::Bf16x3,
        _ => {
            let p =
                std::env::var("NORMFLOW_PRODUCTS").ok().and_then(|v| ProductPrecision::from_name(&v)).unwrap_or(ProductPrecision::Bf16x3);
            let _ = PROCESS.compare_exchange(0, encode(p), Ordering::Relaxed, Ordering::Relaxed);
            p
        }
    }
}

/// Runs `f` with products at precision `p`, on this thread and in the work it hands to the
/// worker pool.
pub fn with_product_precision<R>(p: ProductPrecision, f: impl FnOnce() -> R) -> R {
    super::threads::with_thread_override(&THREAD, p, f)
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
pub(crate) const MIN_SIDE: usize = 96;

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
    super::matmul::instrumented(|| amx::product(out, ldo, &a, &b, accumulate));
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
        amx::pack_right(&b, amx::words_mut(&mut tiles));
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
        super::matmul::instrumented(|| amx::product_packed(out, self.n, &a, amx::words(&self.tiles), self.n, false));
        true
    }
}

/// Whether a product of this shape (`m×n` out, inner `k`) runs split on this thread.
pub(crate) fn wanted(m: usize, n: usize, k: usize) -> bool {
    product_precision() == ProductPrecision::Bf16x3 && k >= MIN_INNER && m >= MIN_SIDE && n >= MIN_SIDE && split_products_available()
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
        let has_amx = split_products_available();
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
                    if has_amx {
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
