//! The numeric core, and the only home of numeric kernels: row-major `f32` matrices and their
//! buffer store (`matrix`, `pool`), matrix products through `gemm` (`matmul`;
//! split-`bf16` products on AMX tiles in `split_product`, the default where AMX is), 2-D convolutions
//! over images stored as rows (`conv`, `conv_group`: im2col and products, for the image flows,
//! with register-tiled products for their narrow layers in `tile_product`), the
//! element-wise transformer passes that run eight or more elements per vector lane (`lanes`
//! drives them, `affine_lanes` and `spline_lanes` are the kernels, `spline` their shape and
//! constants), vectorised `exp`/`ln` (`fastmath`), the worker pool (`threads`, reached from
//! outside only through functions over row ranges such as `map_row_ranges`), seeded random
//! draws (`rng`) and Adam (`adam`). The element-wise kernels are compiled once per instruction
//! set and chosen at run time (`isa`), so one binary uses the widest vectors of each CPU. Everything that names `std::arch` or needs `unsafe` lives
//! here. Layers in `bijection/`, `nn/`, `flows/` and `distribution/` call these functions over
//! slices and shapes; a second backend (a GPU, say) would be a second implementation of them,
//! chosen here, not a rewrite of every layer. There is no autograd: every layer caches what its
//! backward pass needs and derives its gradients by hand. Benchmark instrumentation (the product
//! clock and probes) is built only with the `bench` feature.

mod activation;
mod adam;
pub(crate) mod affine_lanes;
mod amx;
mod conv;
pub(crate) mod conv1d;
pub(crate) mod conv_group;
mod direction;
pub(crate) mod fastmath;
mod gated;
pub mod isa;
pub(crate) mod kept;
pub(crate) mod lanes;
mod linear;
mod matmul;
mod matrix;
mod matrix_ref;
pub(crate) mod pool;
#[cfg(feature = "bench")]
mod probe;
#[cfg(feature = "bench")]
mod product_clock;
mod rng;
pub(crate) mod small_linear;
pub(crate) mod spline;
pub(crate) mod spline_lanes;
pub(crate) mod split_product;
pub(crate) mod threads;
pub(crate) mod tile_product;

pub(crate) use activation::{bias_grad, bias_relu, bias_silu, relu_gate};
pub(crate) use gated::{gated, gated_backward};
pub(crate) use linear::linear;
pub(crate) use threads::{map_row_ranges, map_row_ranges_into};

pub use adam::Adam;
pub use conv::{conv2d_backward, conv2d_forward, Conv2dShape, ImageShape};
pub(crate) use conv::{for_each_image_part, image_parts};
pub use conv1d::{conv1d_backward, conv1d_forward, Conv1dShape};
pub(crate) use conv_group::{gather, group_images, groups, scatter, GroupConv};
pub use direction::Direction;
#[cfg(feature = "bench")]
pub use matmul::inside_product_kernel;
pub(crate) use matmul::{block_product, matmul_a_bt, matmul_a_bt_strided, matmul_ab, matmul_at_b, Block, Product};
pub use matrix::Matrix;
pub use matrix_ref::MatrixRef;
pub use pool::{thread_cache_bytes, trim_thread_cache};
#[cfg(feature = "bench")]
pub use probe::{conv_layer_seconds, multiply_add_peak_gflops, product_gflops, split_peak_gflops};
#[cfg(feature = "bench")]
pub use product_clock::time_in_products;
pub(crate) use rng::fill_normal_blocks;
pub use rng::Rng;
pub use spline::SplineShape;
pub use split_product::{product_precision, set_product_precision, split_products_available, with_product_precision, ProductPrecision};
