//! Every bijection through the shared harness (DESIGN.md §5), with random, non-identity
//! parameters.

use normflow::bijection::{
    ActNorm, AffineCoupling, Chain, Invert, MaskedAutoregressive, Permutation, SplineShape, Standardize, Transformer,
};
use normflow::nn::{HiddenDegrees, TimeFeatures};
use normflow::testing::{check_bijection, spline_options, HarnessOptions};
use normflow::{Bijection, Rng};

fn run(mut b: Box<dyn Bijection>, opts: HarnessOptions, seed: u64) {
    check_bijection(b.as_mut(), &opts, &mut Rng::new(seed)).unwrap_or_else(|e| panic!("{:?}: {e}", b.spec()));
}

#[test]
fn affine_coupling_passes_harness() {
    let mut rng = Rng::new(1);
    run(Box::new(AffineCoupling::new(5, 2, &[8, 8], 0, Transformer::Affine, &mut rng).unwrap()), HarnessOptions::default(), 2);
}

#[test]
fn conditional_affine_coupling_passes_harness() {
    let mut rng = Rng::new(1);
    let opts = HarnessOptions { context_dim: 3, ..Default::default() };
    run(Box::new(AffineCoupling::new(4, 2, &[8], 3, Transformer::Affine, &mut rng).unwrap()), opts, 3);
}

#[test]
fn additive_coupling_passes_harness() {
    let mut rng = Rng::new(1);
    run(Box::new(AffineCoupling::new(4, 1, &[8, 8], 0, Transformer::Additive, &mut rng).unwrap()), HarnessOptions::default(), 4);
}

#[test]
fn masked_autoregressive_passes_harness() {
    let mut rng = Rng::new(1);
    let opts = HarnessOptions { forward_gradients: false, ..Default::default() };
    run(Box::new(MaskedAutoregressive::new(4, &[12, 12], vec![2, 0, 3, 1], 0, Transformer::Affine, &mut rng).unwrap()), opts, 5);
}

#[test]
fn maf_with_tiled_masked_products_passes_harness() {
    // Wide enough that each masked product is split into tiles that skip the zero blocks.
    let mut rng = Rng::new(1);
    let opts = HarnessOptions { forward_gradients: false, ..Default::default() };
    let order: Vec<usize> = (0..12).rev().collect();
    run(Box::new(MaskedAutoregressive::new(12, &[128, 96], order, 0, Transformer::Affine, &mut rng).unwrap()), opts.clone(), 24);
    // Random weights of this width drive the spline's parameters to extremes at the default
    // scale (3 times the fan-in of the small tests): scaled down by about √(fan-in ratio).
    let opts = HarnessOptions { context_dim: 2, param_scale: 0.1, ..opts };
    run(Box::new(MaskedAutoregressive::new(6, &[96, 64], rng.permutation(6), 2, spline(), &mut rng).unwrap()), opts, 25);
}

#[test]
fn maf_with_cyclic_hidden_degrees_passes_harness() {
    let mut rng = Rng::new(1);
    let opts = HarnessOptions { forward_gradients: false, ..Default::default() };
    let layer = MaskedAutoregressive::with_hidden_degrees(
        5,
        &[40, 24],
        vec![4, 1, 0, 3, 2],
        0,
        Transformer::Affine,
        HiddenDegrees::Cyclic,
        &mut rng,
    );
    let layer = layer.unwrap();
    assert_eq!(serde_json::to_value(layer.spec()).unwrap()["hidden_degrees"], "cyclic");
    let sorted = MaskedAutoregressive::new(5, &[40, 24], vec![4, 1, 0, 3, 2], 0, Transformer::Affine, &mut rng).unwrap();
    assert_eq!(serde_json::to_value(sorted.spec()).unwrap()["hidden_degrees"], "sorted");
    run(Box::new(layer), opts, 26);
}

#[test]
fn conditional_masked_autoregressive_passes_harness() {
    let mut rng = Rng::new(1);
    let opts = HarnessOptions { forward_gradients: false, context_dim: 2, ..Default::default() };
    run(Box::new(MaskedAutoregressive::new(3, &[10], vec![0, 1, 2], 2, Transformer::Affine, &mut rng).unwrap()), opts, 6);
}

#[test]
fn one_dimensional_maf_passes_harness() {
    let mut rng = Rng::new(1);
    let opts = HarnessOptions { forward_gradients: false, ..Default::default() };
    run(Box::new(MaskedAutoregressive::new(1, &[6], vec![0], 0, Transformer::Affine, &mut rng).unwrap()), opts, 7);
}

#[test]
fn iaf_is_inverted_maf_and_passes_harness() {
    let mut rng = Rng::new(1);
    // IAF: one-pass sampling, so its forward direction has gradients; its density direction is
    // MAF's sequential pass.
    let opts = HarnessOptions { inverse_gradients: false, ..Default::default() };
    run(
        Box::new(Invert(Box::new(MaskedAutoregressive::new(3, &[10, 10], vec![0, 1, 2], 0, Transformer::Affine, &mut rng).unwrap()))),
        opts,
        8,
    );
}

#[test]
fn permutations_pass_harness() {
    run(Box::new(Permutation::reverse(5)), HarnessOptions::default(), 9);
    run(Box::new(Permutation::random(6, &mut Rng::new(3))), HarnessOptions::default(), 10);
}

#[test]
fn actnorm_passes_harness() {
    run(Box::new(ActNorm::new(4)), HarnessOptions::default(), 11);
}

#[test]
fn standardize_passes_harness() {
    let s = Standardize::from_stats(vec![1.0, -2.0, 0.5], vec![0.5, 3.0, 1.5]).unwrap();
    run(Box::new(s), HarnessOptions::default(), 12);
}

#[test]
fn chain_of_everything_passes_harness() {
    let mut rng = Rng::new(1);
    let layers: Vec<Box<dyn Bijection>> = vec![
        Box::new(AffineCoupling::new(4, 2, &[8], 0, Transformer::Affine, &mut rng).unwrap()),
        Box::new(Permutation::reverse(4)),
        Box::new(ActNorm::new(4)),
        Box::new(MaskedAutoregressive::new(4, &[8], vec![0, 1, 2, 3], 0, Transformer::Affine, &mut rng).unwrap()),
        Box::new(Standardize::from_stats(vec![0.0, 1.0, 2.0, 3.0], vec![1.0, 2.0, 0.5, 1.0]).unwrap()),
    ];
    let opts = HarnessOptions { forward_gradients: false, param_scale: 0.2, ..Default::default() };
    run(Box::new(Chain::new(layers).unwrap()), opts, 13);
}

#[test]
fn new_layers_are_the_identity() {
    let mut rng = Rng::new(1);
    let x = normflow::Matrix::from_vec(2, 4, vec![0.3, -1.0, 2.0, 0.1, 5.0, -3.0, 0.0, 1.0]);
    let layers: Vec<Box<dyn Bijection>> = vec![
        Box::new(AffineCoupling::new(4, 2, &[8], 0, Transformer::Affine, &mut rng).unwrap()),
        Box::new(MaskedAutoregressive::new(4, &[8], vec![3, 2, 1, 0], 0, Transformer::Affine, &mut rng).unwrap()),
        Box::new(ActNorm::new(4)),
    ];
    for l in layers {
        let (y, ld) = l.forward_and_log_det(&x, None).unwrap();
        assert_eq!(y, x, "{l:?}");
        assert!(ld.iter().all(|&v| v == 0.0));
    }
}

#[test]
fn actnorm_data_init_whitens_and_guards_zero_variance() {
    let mut a = ActNorm::new(2);
    let x = normflow::Matrix::from_vec(4, 2, vec![1.0, 5.0, 3.0, 5.0, 5.0, 5.0, 7.0, 5.0]);
    let z = a.data_init(&x, None).unwrap();
    let col0: Vec<f32> = (0..4).map(|i| z.get(i, 0)).collect();
    let mean: f32 = col0.iter().sum::<f32>() / 4.0;
    let var: f32 = col0.iter().map(|v| (v - mean).powi(2)).sum::<f32>() / 4.0;
    assert!(mean.abs() < 1e-6 && (var - 1.0).abs() < 1e-5);
    assert!((0..4).all(|i| z.get(i, 1) == 0.0), "constant column maps to 0, not NaN");
}

#[test]
fn standardize_rejects_constant_column() {
    let mut s = Standardize::new(2);
    let x = normflow::Matrix::from_vec(3, 2, vec![1.0, 2.0, 3.0, 2.0, 4.0, 2.0]);
    let err = s.data_init(&x, None).unwrap_err();
    assert!(matches!(err, normflow::Error::ConstantColumn { column: 2 }), "{err}");
}

#[test]
fn maf_forward_gradient_is_a_clear_error() {
    let mut rng = Rng::new(1);
    let m = MaskedAutoregressive::new(2, &[4], vec![0, 1], 0, Transformer::Affine, &mut rng).unwrap();
    let x = normflow::Matrix::zeros(1, 2);
    let err = m.train_forward(&x, None, normflow::bijection::Direction::Forward, &mut normflow::bijection::Tape::new()).unwrap_err();
    assert!(err.to_string().contains("sequential"), "{err}");
}

#[test]
fn wide_maf_with_uneven_hidden_sizes_and_context_passes_harness() {
    // Sampling computes each hidden unit once, grouped by MADE degree; uneven group sizes and
    // context-only units must still invert the one-pass density direction exactly.
    let mut rng = Rng::new(1);
    let opts = HarnessOptions { forward_gradients: false, context_dim: 2, roundtrip_tol: 2e-4, ..Default::default() };
    run(
        Box::new(MaskedAutoregressive::new(7, &[13, 9, 11], vec![3, 6, 0, 5, 1, 4, 2], 2, Transformer::Affine, &mut rng).unwrap()),
        opts,
        14,
    );
}

fn spline() -> Transformer {
    Transformer::Spline(SplineShape::default())
}

#[test]
fn spline_coupling_passes_harness() {
    let mut rng = Rng::new(1);
    run(Box::new(AffineCoupling::new(4, 2, &[8, 8], 0, spline(), &mut rng).unwrap()), spline_options(), 21);
    let few_bins = Transformer::Spline(SplineShape { bins: 3, bound: 2.0 });
    run(
        Box::new(AffineCoupling::new(3, 1, &[8], 2, few_bins, &mut rng).unwrap()),
        HarnessOptions { context_dim: 2, ..spline_options() },
        22,
    );
}

#[test]
fn spline_autoregressive_passes_harness() {
    let mut rng = Rng::new(1);
    let opts = HarnessOptions { forward_gradients: false, ..spline_options() };
    run(Box::new(MaskedAutoregressive::new(4, &[12, 12], vec![1, 3, 0, 2], 0, spline(), &mut rng).unwrap()), opts.clone(), 23);
    run(
        Box::new(MaskedAutoregressive::new(3, &[9], vec![0, 1, 2], 2, spline(), &mut rng).unwrap()),
        HarnessOptions { context_dim: 2, ..opts },
        24,
    );
}

#[test]
fn zero_spline_parameters_are_exactly_the_identity() {
    let mut rng = Rng::new(1);
    let layer = AffineCoupling::new(2, 1, &[4], 0, spline(), &mut rng).unwrap();
    let x = normflow::Matrix::from_vec(6, 2, vec![0.0, -5.0, 0.0, 5.0, 0.0, 1.25, 0.0, -3.3, 0.0, 4.99, 0.0, 1e6]);
    for (y, ld) in [layer.forward_and_log_det(&x, None).unwrap(), layer.inverse_and_log_det(&x, None).unwrap()] {
        assert!(y.as_slice().iter().zip(x.as_slice()).all(|(a, b)| (a - b).abs() <= 1e-5 * (1.0 + b.abs())), "{y:?}");
        assert!(ld.iter().all(|v| v.abs() < 1e-5), "{ld:?}");
    }
}

#[test]
fn spline_gradients_stay_finite_at_knots_bounds_and_far_out() {
    use normflow::bijection::{Direction, Tape};
    let mut rng = Rng::new(5);
    let mut layer = AffineCoupling::new(2, 1, &[6], 0, spline(), &mut rng).unwrap();
    normflow::testing::randomize_params(&mut layer, 2.0, &mut rng);
    let values = [-1e6f32, -5.0, -5.0 + 1e-6, -2.5, 0.0, 2.5, 5.0 - 1e-6, 5.0, 1e6, f32::MAX / 4.0];
    let x = normflow::Matrix::from_vec(values.len(), 2, values.iter().flat_map(|&v| [0.3, v]).collect());
    for dir in [Direction::Forward, Direction::Inverse] {
        let mut tape = Tape::new();
        let (y, ld) = layer.train_forward(&x, None, dir, &mut tape).unwrap();
        assert!(y.first_non_finite().is_none() && ld.iter().all(|v| v.is_finite()), "{dir:?}");
        let mut grads = vec![0.0; layer.num_params()];
        let g = layer
            .backward(
                dir,
                &mut tape,
                normflow::Matrix::from_vec(values.len(), 2, vec![1.0; 2 * values.len()]),
                &vec![1.0; values.len()],
                &mut grads,
            )
            .unwrap();
        assert!(g.first_non_finite().is_none() && grads.iter().all(|v| v.is_finite()), "{dir:?}");
    }
}

#[test]
fn bounds_logit_passes_harness_and_rejects_out_of_range_data() {
    use normflow::bijection::{Bounds, Interval};
    let b = Bounds::new(vec![Some(Interval { lo: -5.0, hi: 5.0 }), None, Some(Interval { lo: -3.0, hi: 4.0 })]).unwrap();
    // Extremes both directions must accept: the bounds themselves and values near them.
    let opts = HarnessOptions { extremes: vec![-3.0, 0.0, 4.0, 3.999, -2.999], ..Default::default() };
    run(Box::new(b.clone()), opts, 31);
    // Far-out latent values map inside the bounds with finite log-dets.
    let z = normflow::Matrix::from_vec(2, 3, vec![1e6, 1e6, -1e6, -1e6, 0.0, 1e6]);
    let (x, ld) = b.forward_and_log_det(&z, None).unwrap();
    assert!(ld.iter().all(|v| v.is_finite()));
    assert!((x.get(0, 0) - 5.0).abs() < 1e-3 && (x.get(0, 2) + 3.0).abs() < 1e-3 && x.get(1, 0) >= -5.0);
    // Data outside the bounds is a clear error, not a NaN.
    let bad = normflow::Matrix::from_vec(1, 3, vec![0.0, 0.0, 4.5]);
    let err = b.inverse_and_log_det(&bad, None).unwrap_err();
    assert!(matches!(err, normflow::Error::OutOfBounds { row: 1, column: 3, .. }), "{err}");
}

#[test]
fn lu_linear_passes_harness_and_starts_as_identity() {
    use normflow::bijection::LuLinear;
    let lu = LuLinear::new(vec![2, 0, 3, 1]).unwrap();
    let x = normflow::Matrix::from_vec(1, 4, vec![1.0, 2.0, 3.0, 4.0]);
    let (y, ld) = lu.forward_and_log_det(&x, None).unwrap();
    assert_eq!(ld[0], 0.0);
    assert_eq!(y.as_slice(), &[3.0, 1.0, 4.0, 2.0], "identity L, U: only the permutation acts");
    run(Box::new(lu), HarnessOptions { extremes: vec![1e4, -1e4, 0.0, 50.0], ..Default::default() }, 41);
    run(Box::new(LuLinear::new(vec![0]).unwrap()), HarnessOptions::default(), 42);
    assert!(LuLinear::new(vec![0, 0]).is_err());
}

#[test]
fn dequantize_passes_harness_and_reports_its_columns() {
    use normflow::bijection::Dequantize;
    let d = Dequantize::new(3, vec![2, 0, 2]).unwrap();
    assert_eq!(d.dequantized_columns(), vec![0, 2]);
    run(Box::new(d.clone()), HarnessOptions::default(), 51);
    let chain = Chain::new(vec![Box::new(Permutation::reverse(3)), Box::new(d)]).unwrap();
    assert_eq!(chain.dequantized_columns(), vec![0, 2], "the data-side layer's columns");
    assert!(Dequantize::new(2, vec![2]).is_err());
}

#[test]
fn batch_norm_passes_harness_in_evaluation_mode() {
    use normflow::bijection::BatchNorm;
    let mut bn = BatchNorm::new(3);
    let mut rng = Rng::new(2);
    let data = normflow::Matrix::from_vec(50, 3, (0..150).map(|k| rng.normal() as f32 * (1.0 + (k % 3) as f32) + (k % 3) as f32).collect());
    bn.data_init(&data, None).unwrap();
    let (m, v) = bn.running_stats();
    assert!(m[2] > 1.0 && v[2] > 4.0, "running statistics from data: {m:?} {v:?}");
    run(Box::new(bn), HarnessOptions::default(), 61);
}

#[test]
fn batch_norm_training_gradients_flow_through_the_batch_statistics() {
    use normflow::bijection::{BatchNorm, Direction, Tape};
    let mut bn = BatchNorm::new(2);
    normflow::testing::randomize_params(&mut bn, 0.5, &mut Rng::new(4));
    bn.set_training(true);
    let mut rng = Rng::new(5);
    let x = normflow::Matrix::from_vec(6, 2, (0..12).map(|_| rng.normal() as f32 * 2.0 + 1.0).collect());
    let w = normflow::Matrix::from_vec(6, 2, (0..12).map(|_| rng.normal() as f32).collect());
    let v: Vec<f32> = (0..6).map(|_| rng.normal() as f32).collect();
    let loss = |bn: &BatchNorm, x: &normflow::Matrix| -> f64 {
        let (z, ld) = bn.train_forward(x, None, Direction::Inverse, &mut Tape::new()).unwrap();
        z.as_slice().iter().zip(w.as_slice()).map(|(a, b)| (a * b) as f64).sum::<f64>()
            + ld.iter().zip(&v).map(|(a, b)| (a * b) as f64).sum::<f64>()
    };
    let mut tape = Tape::new();
    bn.train_forward(&x, None, Direction::Inverse, &mut tape).unwrap();
    let mut grads = vec![0.0; 4];
    let gx = bn.backward(Direction::Inverse, &mut tape, w.clone(), &v, &mut grads).unwrap();
    for k in 0..12 {
        let (mut xp, mut xm) = (x.clone(), x.clone());
        xp.as_mut_slice()[k] += 1e-3;
        xm.as_mut_slice()[k] -= 1e-3;
        let fd = (loss(&bn, &xp) - loss(&bn, &xm)) / 2e-3;
        assert!((gx.as_slice()[k] as f64 - fd).abs() < 2e-2 * (1.0 + fd.abs()), "input {k}: {} vs {fd}", gx.as_slice()[k]);
    }
    let mut p = vec![0.0; 4];
    bn.params(&mut |q| p.copy_from_slice(q));
    for k in 0..4 {
        let set = |val: f32, bn: &mut BatchNorm| {
            let mut q = p.clone();
            q[k] = val;
            bn.params_mut(&mut |dst| dst.copy_from_slice(&q));
        };
        set(p[k] + 1e-3, &mut bn);
        let lp = loss(&bn, &x);
        set(p[k] - 1e-3, &mut bn);
        let lm = loss(&bn, &x);
        set(p[k], &mut bn);
        let fd = (lp - lm) / 2e-3;
        assert!((grads[k] as f64 - fd).abs() < 2e-2 * (1.0 + fd.abs()), "param {k}: {} vs {fd}", grads[k]);
    }
    // Training mode moved the running statistics towards the batch's.
    assert!(bn.running_stats().0.iter().all(|&m| m != 0.0));
}

#[test]
fn residual_conditioner_coupling_passes_harness() {
    let mut rng = Rng::new(1);
    // Residual blocks add up: smaller random weights keep the spline parameters in the range where
    // finite differences at step 2e-3 are accurate.
    run(
        Box::new(AffineCoupling::with_residual(4, 2, 8, 2, 0, spline(), &mut rng).unwrap()),
        HarnessOptions { param_scale: 0.15, ..spline_options() },
        71,
    );
    run(
        Box::new(AffineCoupling::with_residual(3, 1, 6, 1, 2, Transformer::Affine, &mut rng).unwrap()),
        HarnessOptions { context_dim: 2, ..Default::default() },
        72,
    );
}

#[test]
fn squeeze_turns_each_2x2_block_into_four_channels() {
    use normflow::bijection::{ImageShape, Squeeze};
    // One channel of 2×4: blocks [[0,1],[4,5]] and [[2,3],[6,7]].
    let sq = Squeeze::new(ImageShape { channels: 1, height: 2, width: 4 }).unwrap();
    let x = normflow::Matrix::from_vec(1, 8, (0..8).map(|v| v as f32).collect());
    let (z, ld) = sq.inverse_and_log_det(&x, None).unwrap();
    // Channel 2·dy + dx holds offset (dy, dx) of each block, blocks left to right.
    assert_eq!(z.as_slice(), &[0.0, 2.0, 1.0, 3.0, 4.0, 6.0, 5.0, 7.0]);
    assert_eq!(ld, vec![0.0]);
    assert!(Squeeze::new(ImageShape { channels: 1, height: 3, width: 4 }).is_err(), "odd height");
}

#[test]
fn per_channel_actnorm_initialises_each_channel_over_its_pixels() {
    let mut an = ActNorm::per_channel(2, 3);
    let mut rng = Rng::new(4);
    // Channel 0 ~ N(5, 2²), channel 1 ~ N(−1, 0.5²), three pixels each.
    let data: Vec<f32> = (0..200)
        .flat_map(|_| {
            let mut row = Vec::new();
            row.extend((0..3).map(|_| 5.0 + 2.0 * rng.normal() as f32));
            row.extend((0..3).map(|_| -1.0 + 0.5 * rng.normal() as f32));
            row
        })
        .collect();
    let x = normflow::Matrix::from_vec(200, 6, data);
    let z = an.data_init(&x, None).unwrap();
    for c in 0..2 {
        let v: Vec<f64> = (0..200).flat_map(|i| (0..3).map(move |p| (i, c * 3 + p))).map(|(i, j)| z.get(i, j) as f64).collect();
        let m = v.iter().sum::<f64>() / v.len() as f64;
        let var = v.iter().map(|x| (x - m).powi(2)).sum::<f64>() / v.len() as f64;
        assert!(m.abs() < 1e-4 && (var - 1.0).abs() < 1e-3, "channel {c}: mean {m}, variance {var}");
    }
    // The log-det counts every pixel: 3 · Σ s.
    let (_, ld) = an.forward_and_log_det(&normflow::Matrix::zeros(1, 6), None).unwrap();
    let mut s = Vec::new();
    an.params(&mut |p| s.extend_from_slice(&p[..2]));
    assert!((ld[0] - 3.0 * (s[0] + s[1])).abs() < 1e-5);
}

#[test]
fn convolutional_coupling_starts_as_the_identity_and_passes_its_first_channels_through() {
    use normflow::bijection::ImageShape;
    let image = ImageShape { channels: 4, height: 3, width: 2 };
    let mut layer = AffineCoupling::with_conv(image, 8, Transformer::Affine, &mut Rng::new(1)).unwrap();
    let mut rng = Rng::new(2);
    let x = normflow::Matrix::from_vec(3, 24, (0..72).map(|_| rng.normal() as f32).collect());
    let (y, ld) = layer.forward_and_log_det(&x, None).unwrap();
    assert_eq!((y.as_slice(), ld), (x.as_slice(), vec![0.0; 3]), "zero last convolution: the identity");
    normflow::testing::randomize_params(&mut layer, 0.3, &mut rng);
    let (y, _) = layer.forward_and_log_det(&x, None).unwrap();
    // Channels 0 and 1 (12 values) pass through; channels 2 and 3 change.
    assert_eq!(&y.as_slice()[..12], &x.as_slice()[..12]);
    assert_ne!(&y.as_slice()[12..24], &x.as_slice()[12..24]);
    let spec = layer.spec();
    assert_eq!(spec.build().unwrap().spec(), spec, "rebuilt from its spec");
}

#[test]
fn contractive_couplings_never_expand_the_density_direction_whatever_their_weights() {
    use normflow::bijection::ImageShape;
    // Eight convolutional couplings with large random weights: in the density direction each
    // only contracts, so the stack's log-det is never positive and no input is amplified past
    // the shifts. The soft-clipped affine transformer, with the same weights, expands.
    let image = ImageShape { channels: 2, height: 4, width: 4 };
    let stack = |transformer: Transformer| {
        let mut rng = Rng::new(7);
        let mut layers: Vec<Box<dyn Bijection>> = Vec::new();
        for i in 0..8 {
            let mut coupling = AffineCoupling::with_conv(image, 6, transformer, &mut rng).unwrap();
            normflow::testing::randomize_params(&mut coupling, 1.5, &mut rng);
            layers.push(Box::new(coupling));
            // Swap the halves so every channel is transformed.
            let order: Vec<usize> = (0..image.len()).map(|j| (j + image.len() / 2 + i % 2) % image.len()).collect();
            layers.push(Box::new(Permutation::new(order).unwrap()));
        }
        Chain::new(layers).unwrap()
    };
    let mut rng = Rng::new(8);
    let x =
        normflow::Matrix::from_vec(64, image.len(), (0..64 * image.len()).map(|i| rng.normal() as f32 * (1.0 + (i % 7) as f32)).collect());
    let (z, ld) = stack(Transformer::Contractive).inverse_and_log_det(&x, None).unwrap();
    assert!(z.as_slice().iter().all(|v| v.is_finite()));
    assert!(ld.iter().all(|&l| l.is_finite() && l <= 1e-4), "a contraction's log-det is never positive: {ld:?}");
    let (_, ld) = stack(Transformer::Affine).inverse_and_log_det(&x, None).unwrap();
    assert!(ld.iter().any(|&l| l > 1.0), "the soft-clipped scales can expand");
}

#[test]
fn continuous_flow_passes_harness_without_gradients() {
    use normflow::bijection::{ContinuousFlow, ContinuousSpec};
    use normflow::ode::Solver;
    // Fixed steps: the map is then a smooth function of its input, so finite differences
    // through it are exact up to rounding (an adaptive solver's step choices move with the
    // input, and its error, up to its tolerance, divided by the difference step, swamps them);
    // 64 classical Runge-Kutta steps put the trace integral within 1e-6 of the map's log-det.
    for (context_dim, time_features) in [(0, TimeFeatures::Harmonics), (2, TimeFeatures::Octaves)] {
        let spec = ContinuousSpec {
            dim: 3,
            context_dim,
            hidden: vec![16, 16],
            frequencies: 2,
            time_features,
            sigma_min: 1e-4,
            solver: Solver::Rk4 { steps: 64 },
        };
        let layer = ContinuousFlow::from_spec(&spec).unwrap();
        let opts =
            HarnessOptions { forward_gradients: false, inverse_gradients: false, param_scale: 0.5, context_dim, ..Default::default() };
        run(Box::new(layer), opts, 31);
    }
}
