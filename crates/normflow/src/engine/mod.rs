//! The numeric core: row-major `f32` matrices, matrix products through `gemm`, a seeded random
//! generator and the Adam optimiser.
//!
//! This module is the only place that names the matrix-product kernel, so that another backend
//! (a GPU one, say) can be added later without touching the bijections' public API. There is no
//! autograd: every layer caches what its backward pass needs and derives its gradients by hand.

mod adam;
pub(crate) mod fastmath;
mod matmul;
mod matrix;
pub(crate) mod pool;
#[cfg(feature = "bench")]
mod probe;
#[cfg(feature = "bench")]
mod product_clock;
mod rng;
pub(crate) mod threads;

pub use adam::Adam;
#[cfg(feature = "bench")]
pub use matmul::inside_product_kernel;
pub(crate) use matmul::{block_product, matmul_a_bt, matmul_a_bt_strided, matmul_ab, matmul_at_b, Block, Product};
pub use matrix::Matrix;
#[cfg(feature = "bench")]
pub use probe::{multiply_add_peak_gflops, product_gflops};
#[cfg(feature = "bench")]
pub use product_clock::time_in_products;
pub use rng::Rng;
