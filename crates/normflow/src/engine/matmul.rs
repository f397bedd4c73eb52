//! Matrix products on row-major slices through the `gemm` crate.
//!
//! Every product here runs single-threaded: the engine parallelises across the rows of a batch
//! instead (see `threads`), which measured faster on the small products of flow conditioners.

use gemm::{gemm, Parallelism};

#[cfg(feature = "bench")]
thread_local! {
    static IN_KERNEL: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether the calling thread is inside the matrix-product kernel (the `gemm` crate) right now.
///
/// The kernel allocates its own small packing scratch on every call; the rest of a training
/// step allocates nothing once warm. Allocation audits (the `allocation` test) use this to tell
/// the two apart. Built with the `bench` feature only.
#[cfg(feature = "bench")]
#[doc(hidden)]
pub fn inside_product_kernel() -> bool {
    IN_KERNEL.with(std::cell::Cell::get)
}

/// Runs one product kernel call, marked for the allocation audit and timed by the product clock
/// (`bench` feature).
#[cfg(feature = "bench")]
pub(crate) fn instrumented(kernel: impl FnOnce()) {
    IN_KERNEL.with(|k| k.set(true));
    let started = super::product_clock::start();
    kernel();
    super::product_clock::stop(started);
    IN_KERNEL.with(|k| k.set(false));
}

/// Runs one product kernel call (no instrumentation without the `bench` feature).
#[cfg(not(feature = "bench"))]
#[inline(always)]
pub(crate) fn instrumented(kernel: impl FnOnce()) {
    kernel();
}

/// A strided operand: the buffer, its column stride and its row stride (in elements).
type Strided<'a> = (&'a [f32], isize, isize);

/// `out[m×n] (+)= A[m×k] · B[k×n]` with `out` row-major, rows `ldo` apart, and `A`, `B` given
/// by strides.
#[allow(clippy::too_many_arguments)]
fn product(
    out: &mut [f32],
    ldo: usize,
    (a, a_cs, a_rs): Strided,
    (b, b_cs, b_rs): Strided,
    m: usize,
    n: usize,
    k: usize,
    accumulate: bool,
) {
    if m == 0 || n == 0 {
        return;
    }
    assert!(n <= ldo && out.len() >= (m - 1) * ldo + n);
    if k == 0 {
        if !accumulate {
            out.chunks_mut(ldo).take(m).for_each(|row| row[..n].fill(0.0));
        }
        return;
    }
    if super::split_product::try_product(out, ldo, (a, a_cs, a_rs), (b, b_cs, b_rs), m, n, k, accumulate) {
        return;
    }
    // SAFETY: callers pass buffers that cover the strided extents (asserted here and by each
    // wrapper); `out` is a distinct, exclusively borrowed buffer, so it aliases neither operand.
    unsafe { call_gemm(out, (1, ldo as isize), accumulate, (a, a_cs, a_rs), (b, b_cs, b_rs), m, n, k) };
}

/// One `gemm` call, single-threaded, instrumented: `out[m×n] (+)= A · B` with `out` at the
/// strides `(column, row)`.
///
/// # Safety
/// Every operand must cover its strided extent, and `out` must alias neither operand.
#[allow(clippy::too_many_arguments)]
unsafe fn call_gemm(
    out: &mut [f32],
    (out_cs, out_rs): (isize, isize),
    accumulate: bool,
    a: Strided,
    b: Strided,
    m: usize,
    n: usize,
    k: usize,
) {
    let ((a, a_cs, a_rs), (b, b_cs, b_rs)) = (a, b);
    // SAFETY: as the caller promises.
    instrumented(|| unsafe {
        gemm(
            m,
            n,
            k,
            out.as_mut_ptr(),
            out_cs,
            out_rs,
            accumulate,
            a.as_ptr(),
            a_cs,
            a_rs,
            b.as_ptr(),
            b_cs,
            b_rs,
            1.0,
            1.0,
            false,
            false,
            false,
            Parallelism::None,
        );
    });
}

/// Whether a row-major block of `rows × cols`, rows `ld` apart, fits in `len` elements.
fn covers(len: usize, rows: usize, cols: usize, ld: usize) -> bool {
    rows == 0 || cols == 0 || (cols <= ld && len >= (rows - 1) * ld + cols)
}

/// Which product of two row-major operands a block product computes.
#[derive(Clone, Copy, Debug)]
pub(crate) enum Product {
    /// `a[m×k] · b[n×k]ᵀ`: a linear layer's forward pass, the weight stored `[out, in]`.
    ABt,
    /// `a[m×k] · b[k×n]`: a linear layer's input gradient, `grad_x = grad_y · W`.
    AB,
    /// `a[k×m]ᵀ · b[k×n]`: a linear layer's weight gradient, `grad_W = grad_yᵀ · x`.
    AtB,
}

/// A block of a row-major matrix: the buffer from the block's first element on, and the
/// distance between its rows.
#[derive(Clone, Copy, Debug)]
pub(crate) struct Block<'a> {
    /// The elements, starting at the block's first one.
    pub data: &'a [f32],
    /// Elements from one row to the next.
    pub ld: usize,
}

/// `out[m×n] = product` (`+=` when `accumulate`) with every operand a block of a wider
/// row-major matrix; `out` is `ldo` elements per row.
#[allow(clippy::too_many_arguments)]
pub(crate) fn block_product(
    kind: Product,
    out: &mut [f32],
    ldo: usize,
    a: Block,
    b: Block,
    m: usize,
    n: usize,
    k: usize,
    accumulate: bool,
) {
    let (a_rows, a_cols, b_rows, b_cols) = match kind {
        Product::ABt => (m, k, n, k),
        Product::AB => (m, k, k, n),
        Product::AtB => (k, m, k, n),
    };
    assert!(covers(a.data.len(), a_rows, a_cols, a.ld) && covers(b.data.len(), b_rows, b_cols, b.ld));
    let (a_ld, b_ld) = (a.ld as isize, b.ld as isize);
    // (column stride, row stride) of the operands as gemm sees them: A is m×k, B is k×n.
    let (a_strides, b_strides) = match kind {
        Product::ABt => ((1, a_ld), (b_ld, 1)),
        Product::AB => ((1, a_ld), (1, b_ld)),
        Product::AtB => ((a_ld, 1), (1, b_ld)),
    };
    product(out, ldo, (a.data, a_strides.0, a_strides.1), (b.data, b_strides.0, b_strides.1), m, n, k, accumulate);
}

/// `out[m×n] = a[m×k] · b[n×k]ᵀ` (`+=` when `accumulate`), all dense.
pub(crate) fn matmul_a_bt(out: &mut [f32], a: &[f32], b: &[f32], m: usize, n: usize, k: usize, accumulate: bool) {
    block_product(Product::ABt, out, n, Block { data: a, ld: k }, Block { data: b, ld: k }, m, n, k, accumulate);
}

/// `out[m×n] = a[m×k] · b[n×k]ᵀ` (`+=` when `accumulate`), reading the first `k` columns of
/// rows `lda` apart in `a` (a column prefix of a wider matrix).
#[allow(clippy::too_many_arguments)]
pub(crate) fn matmul_a_bt_strided(out: &mut [f32], a: &[f32], lda: usize, b: &[f32], m: usize, n: usize, k: usize, accumulate: bool) {
    block_product(Product::ABt, out, n, Block { data: a, ld: lda }, Block { data: b, ld: k }, m, n, k, accumulate);
}

/// `out[m×n] = a[m×k] · b[k×n]` (`+=` when `accumulate`), all dense.
pub(crate) fn matmul_ab(out: &mut [f32], a: &[f32], b: &[f32], m: usize, n: usize, k: usize, accumulate: bool) {
    block_product(Product::AB, out, n, Block { data: a, ld: k }, Block { data: b, ld: n }, m, n, k, accumulate);
}

/// `out[m×n] = a[k×m]ᵀ · b[k×n]` (`+=` when `accumulate`), all dense.
pub(crate) fn matmul_at_b(out: &mut [f32], a: &[f32], b: &[f32], m: usize, n: usize, k: usize, accumulate: bool) {
    block_product(Product::AtB, out, n, Block { data: a, ld: m }, Block { data: b, ld: n }, m, n, k, accumulate);
}

#[cfg(test)]
mod tests {
    use super::*;

    fn naive(a: &[f32], b: &[f32], m: usize, n: usize, k: usize) -> Vec<f32> {
        let mut out = vec![0.0; m * n];
        for i in 0..m {
            for j in 0..n {
                out[i * n + j] = (0..k).map(|p| a[i * k + p] * b[p * n + j]).sum();
            }
        }
        out
    }

    fn transpose(a: &[f32], r: usize, c: usize) -> Vec<f32> {
        let mut t = vec![0.0; r * c];
        for i in 0..r {
            for j in 0..c {
                t[j * r + i] = a[i * c + j];
            }
        }
        t
    }

    #[test]
    fn products_match_naive_loops() {
        let (m, n, k) = (5, 7, 3);
        let a: Vec<f32> = (0..m * k).map(|i| (i as f32 * 0.37).sin()).collect();
        let b: Vec<f32> = (0..k * n).map(|i| (i as f32 * 0.91).cos()).collect();
        let want = naive(&a, &b, m, n, k);
        let mut out = vec![0.0; m * n];
        matmul_ab(&mut out, &a, &b, m, n, k, false);
        assert!(out.iter().zip(&want).all(|(x, y)| (x - y).abs() < 1e-5));
        let bt = transpose(&b, k, n);
        matmul_a_bt(&mut out, &a, &bt, m, n, k, false);
        assert!(out.iter().zip(&want).all(|(x, y)| (x - y).abs() < 1e-5));
        let at = transpose(&a, m, k);
        let mut acc = vec![1.0; m * n];
        matmul_at_b(&mut acc, &at, &b, m, n, k, true);
        assert!(acc.iter().zip(&want).all(|(x, y)| (x - 1.0 - y).abs() < 1e-5));
    }

    #[test]
    fn block_products_read_and_write_only_their_blocks() {
        // A 3×2 block at row 1, column 2 of a 5×6 output; operands are blocks of wider buffers.
        let (m, n, k, ldo) = (3, 2, 4, 6);
        let a: Vec<f32> = (0..m * 7).map(|i| (i as f32 * 0.37).sin()).collect(); // m×k at column 1, lda 7
        let bt: Vec<f32> = (0..n * 9).map(|i| (i as f32 * 0.53).cos()).collect(); // n×k at column 3, ldb 9
        let a_blk: Vec<f32> = (0..m).flat_map(|i| a[i * 7 + 1..i * 7 + 1 + k].to_vec()).collect();
        let b_blk: Vec<f32> = (0..k).flat_map(|p| (0..n).map(|j| bt[j * 9 + 3 + p]).collect::<Vec<_>>()).collect();
        let want = naive(&a_blk, &b_blk, m, n, k);
        let check = |out: &[f32], add: f32| {
            for r in 0..5 {
                for c in 0..ldo {
                    let inside = (1..1 + m).contains(&r) && (2..2 + n).contains(&c);
                    let v = out[r * ldo + c];
                    if inside {
                        assert!((v - add - want[(r - 1) * n + c - 2]).abs() < 1e-5);
                    } else {
                        assert_eq!(v, 7.0, "outside the block at ({r}, {c})");
                    }
                }
            }
        };
        let mut out = vec![7.0; 5 * ldo];
        block_product(
            Product::ABt,
            &mut out[ldo + 2..],
            ldo,
            Block { data: &a[1..], ld: 7 },
            Block { data: &bt[3..], ld: 9 },
            m,
            n,
            k,
            false,
        );
        check(&out, 0.0);
        // The same block as a·b with b row-major (k×n inside a k×5 buffer), accumulating.
        let b_blk = &b_blk;
        let b_rm: Vec<f32> = (0..k).flat_map(|p| (0..5).map(move |j| if j < n { b_blk[p * n + j] } else { -1.0 })).collect();
        let mut out = vec![7.0; 5 * ldo];
        (1..1 + m).for_each(|r| out[r * ldo + 2..r * ldo + 2 + n].fill(0.5));
        block_product(Product::AB, &mut out[ldo + 2..], ldo, Block { data: &a[1..], ld: 7 }, Block { data: &b_rm, ld: 5 }, m, n, k, true);
        check(&out, 0.5);
        // And as aᵀ·b with aᵀ stored k×m inside a k×4 buffer.
        let a_blk = &a_blk;
        let at: Vec<f32> = (0..k).flat_map(|p| (0..4).map(move |i| if i < m { a_blk[i * k + p] } else { 9.0 })).collect();
        let mut out = vec![7.0; 5 * ldo];
        block_product(Product::AtB, &mut out[ldo + 2..], ldo, Block { data: &at, ld: 4 }, Block { data: &b_rm, ld: 5 }, m, n, k, false);
        check(&out, 0.0);
    }
}
