//! Matrix products on row-major slices through the `gemm` crate.
//!
//! Every product here runs single-threaded: the engine parallelises across the rows of a batch
//! instead (see `threads`), which measured faster on the small products of flow conditioners.

use std::cell::Cell;

use gemm::{gemm, Parallelism};

thread_local! {
    static IN_KERNEL: Cell<bool> = const { Cell::new(false) };
}

/// Whether the calling thread is inside the matrix-product kernel (the `gemm` crate) right now.
///
/// The kernel allocates its own small packing scratch on every call; the rest of a training
/// step allocates nothing once warm. Allocation audits (the `allocation` test) use this to tell
/// the two apart.
#[doc(hidden)]
pub fn inside_product_kernel() -> bool {
    IN_KERNEL.with(Cell::get)
}

/// A strided operand: the buffer, its column stride and its row stride (in elements).
type Strided<'a> = (&'a [f32], isize, isize);

/// `out[m×n] (+)= A[m×k] · B[k×n]` with `out` row-major and `A`, `B` given by strides.
fn product(out: &mut [f32], (a, a_cs, a_rs): Strided, (b, b_cs, b_rs): Strided, m: usize, n: usize, k: usize, accumulate: bool) {
    debug_assert!(out.len() >= m * n);
    if m == 0 || n == 0 {
        return;
    }
    if k == 0 {
        if !accumulate {
            out[..m * n].fill(0.0);
        }
        return;
    }
    IN_KERNEL.with(|k| k.set(true));
    // SAFETY: callers pass buffers that cover the strided extents (asserted by each wrapper);
    // `out` is a distinct, exclusively borrowed buffer, so it aliases neither operand.
    unsafe {
        gemm(
            m,
            n,
            k,
            out.as_mut_ptr(),
            1,
            n as isize,
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
    }
    IN_KERNEL.with(|k| k.set(false));
}

/// `out[m×n] = a[m×k] · b[n×k]ᵀ` (`+=` when `accumulate`).
///
/// This is a linear layer's forward pass with the weight stored `[out, in]`.
pub(crate) fn matmul_a_bt(out: &mut [f32], a: &[f32], b: &[f32], m: usize, n: usize, k: usize, accumulate: bool) {
    matmul_a_bt_strided(out, a, k, b, m, n, k, accumulate);
}

/// `out[m×n] = a[m×k] · b[n×k]ᵀ` (`+=` when `accumulate`), reading the first `k` columns of
/// rows `lda` apart in `a` (a column prefix of a wider matrix).
#[allow(clippy::too_many_arguments)]
pub(crate) fn matmul_a_bt_strided(out: &mut [f32], a: &[f32], lda: usize, b: &[f32], m: usize, n: usize, k: usize, accumulate: bool) {
    assert!(k <= lda && (m == 0 || k == 0 || a.len() >= (m - 1) * lda + k) && b.len() >= n * k);
    product(out, (a, 1, lda as isize), (b, k as isize, 1), m, n, k, accumulate);
}

/// `out[m×n] = a[m×k] · b[k×n]` (`+=` when `accumulate`).
///
/// This is the input gradient of a linear layer: `grad_x = grad_y · W`.
pub(crate) fn matmul_ab(out: &mut [f32], a: &[f32], b: &[f32], m: usize, n: usize, k: usize, accumulate: bool) {
    assert!(a.len() >= m * k && b.len() >= k * n);
    product(out, (a, 1, k as isize), (b, 1, n as isize), m, n, k, accumulate);
}

/// `out[m×n] = a[k×m]ᵀ · b[k×n]` (`+=` when `accumulate`).
///
/// This is the weight gradient of a linear layer: `grad_W = grad_yᵀ · x`.
pub(crate) fn matmul_at_b(out: &mut [f32], a: &[f32], b: &[f32], m: usize, n: usize, k: usize, accumulate: bool) {
    assert!(a.len() >= k * m && b.len() >= k * n);
    product(out, (a, m as isize, 1), (b, 1, n as isize), m, n, k, accumulate);
}

/// Throughput in GFLOP/s of `threads` concurrent `m×k · k×n` products with the engine's own
/// settings (single-threaded products, one per thread, as the training step runs them): the
/// machine's practical limit for this engine.
pub fn product_gflops(m: usize, n: usize, k: usize, threads: usize) -> f64 {
    let a: Vec<f32> = (0..m * k).map(|i| (i % 7) as f32 * 0.1).collect();
    let b: Vec<f32> = (0..k * n).map(|i| (i % 5) as f32 * 0.1).collect();
    let flop = 2.0 * (m * n * k) as f64;
    let reps = (4e9 / flop).clamp(3.0, 1000.0) as usize;
    let start = std::time::Instant::now();
    std::thread::scope(|s| {
        for _ in 0..threads.max(1) {
            s.spawn(|| {
                let mut out = vec![0.0f32; m * n];
                for _ in 0..reps {
                    matmul_ab(&mut out, &a, &b, m, n, k, false);
                }
            });
        }
    });
    flop * reps as f64 * threads.max(1) as f64 / start.elapsed().as_secs_f64() / 1e9
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
}
