//! # normflow
//!
//! Normalizing flows: invertible maps between a standard normal and your data, giving the
//! **exact** log-likelihood `log p(x) = log N(f⁻¹(x)) + log|det ∂f⁻¹/∂x|`, one-pass sampling, and
//! data ↔ latent maps, on a small hand-written `f32` core.
//!
//! ```
//! use normflow::{data::toy, flows::RealNvpConfig, train::{fit, FitConfig}, Rng};
//!
//! let x = toy::generate("moons", 2000, 1)?;                       // 2-D training data
//! let flow = RealNvpConfig::new(2).with_layers(4).with_hidden(vec![32, 32]).init(&mut Rng::new(0))?;
//! let config = FitConfig { max_epochs: 5, ..FitConfig::default() };
//! let (flow, history) = fit(flow, &x, None, &config, &mut |_| {})?;
//! let log_p = flow.log_prob(&x, None)?;                            // exact log-density per row
//! let samples = flow.sample(100, None, &mut Rng::new(1))?;         // new rows
//! assert!(history.summary.best_val_nll.is_finite() && log_p.len() == 2000);
//! assert_eq!((samples.rows(), samples.cols()), (100, 2));
//! # Ok::<(), normflow::Error>(())
//! ```
//!
//! # Map of the crate
//! | folder | holds |
//! |---|---|
//! | [`engine`] | every numeric kernel: matrices and their buffer store, `gemm` products, the element-wise affine and spline lanes, vectorised `exp`/`ln`, the worker pool, random draws, Adam; the only place with `std::arch` or `unsafe` |
//! | [`bijection`] | the [`Bijection`] trait, `Chain` and `Invert`, and one file per map: coupling, masked autoregressive (and its sampler), transformers, permutation, LU-linear (with the whitening initialisation), ActNorm, BatchNorm, standardise, bounds, dequantise |
//! | [`nn`] | conditioners: MLP, residual MLP, MADE masks and their tiling |
//! | [`distribution`] | the standard normal base and [`Flow`] (base + bijection, validation at the boundary) |
//! | [`flows`] | presets (RealNVP, MAF, NSF) with validated configurations |
//! | [`train`] | `fit` (validation split, early stopping, the guard that keeps the Gaussian start unless training beats it), `Trainer`, reverse KL |
//! | [`data`] | CSV (RFC 4180) and NPY readers, streamed table writer, toy generators |
//! | [`io`] | model files (JSON configuration + safetensors) and safe output writes |
//! | [`anomaly`] | thresholds, metrics, robust trimming of unlabelled outliers |
//! | [`testing`] | the bijection harness and the registry of every bijection kind |
//!
//! # Conventions
//! - `forward` is generative (z → x), `inverse` is inference (x → z); every bijection computes
//!   its log-determinant fused with the map, in both directions ([`bijection`]).
//! - Batches are row-major `[batch, dim]` [`Matrix`]es; log-dets are one value per row.
//! - Presets ([`flows`]) start as the identity and carry their preprocessing (standardisation),
//!   so a saved model ([`io`]) scores raw data.

#![deny(missing_docs)]
// Numeric kernels index several parallel buffers by row; iterator zips of four slices read worse.
#![allow(clippy::needless_range_loop)]

pub mod anomaly;
pub mod audio;
pub mod bijection;
pub mod data;
pub mod distribution;
pub mod engine;
mod error;
pub mod flows;
pub mod io;
pub mod nn;
pub mod ode;
pub mod testing;
pub mod train;

pub use bijection::Bijection;
pub use distribution::{Flow, StandardNormal, MAX_ABS_VALUE};
pub use engine::{Matrix, MatrixRef, Rng};
pub use error::{Error, Result};

/// The README's library example, compiled as a doctest so it cannot rot.
#[cfg(doctest)]
#[doc = include_str!("../../../README.md")]
struct ReadmeDoctests;
