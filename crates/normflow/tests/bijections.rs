//! Every bijection through the shared harness (DESIGN.md §5), with random, non-identity
//! parameters.

use normflow::bijection::{ActNorm, AffineCoupling, Chain, CouplingKind, Invert, MaskedAutoregressive, Permutation, Standardize};
use normflow::testing::{check_bijection, HarnessOptions};
use normflow::{Bijection, Rng};

fn run(mut b: Box<dyn Bijection>, opts: HarnessOptions, seed: u64) {
    check_bijection(b.as_mut(), &opts, &mut Rng::new(seed)).unwrap_or_else(|e| panic!("{:?}: {e}", b.spec()));
}

#[test]
fn affine_coupling_passes_harness() {
    let mut rng = Rng::new(1);
    run(Box::new(AffineCoupling::new(5, 2, &[8, 8], 0, CouplingKind::Affine, &mut rng).unwrap()), HarnessOptions::default(), 2);
}

#[test]
fn conditional_affine_coupling_passes_harness() {
    let mut rng = Rng::new(1);
    let opts = HarnessOptions { context_dim: 3, ..Default::default() };
    run(Box::new(AffineCoupling::new(4, 2, &[8], 3, CouplingKind::Affine, &mut rng).unwrap()), opts, 3);
}

#[test]
fn additive_coupling_passes_harness() {
    let mut rng = Rng::new(1);
    run(Box::new(AffineCoupling::new(4, 1, &[8, 8], 0, CouplingKind::Additive, &mut rng).unwrap()), HarnessOptions::default(), 4);
}

#[test]
fn masked_autoregressive_passes_harness() {
    let mut rng = Rng::new(1);
    let opts = HarnessOptions { forward_gradients: false, ..Default::default() };
    run(Box::new(MaskedAutoregressive::new(4, &[12, 12], vec![2, 0, 3, 1], 0, &mut rng).unwrap()), opts, 5);
}

#[test]
fn conditional_masked_autoregressive_passes_harness() {
    let mut rng = Rng::new(1);
    let opts = HarnessOptions { forward_gradients: false, context_dim: 2, ..Default::default() };
    run(Box::new(MaskedAutoregressive::new(3, &[10], vec![0, 1, 2], 2, &mut rng).unwrap()), opts, 6);
}

#[test]
fn one_dimensional_maf_passes_harness() {
    let mut rng = Rng::new(1);
    let opts = HarnessOptions { forward_gradients: false, ..Default::default() };
    run(Box::new(MaskedAutoregressive::new(1, &[6], vec![0], 0, &mut rng).unwrap()), opts, 7);
}

#[test]
fn iaf_is_inverted_maf_and_passes_harness() {
    let mut rng = Rng::new(1);
    // IAF: one-pass sampling, so its forward direction has gradients; its density direction is
    // MAF's sequential pass.
    let opts = HarnessOptions { inverse_gradients: false, ..Default::default() };
    run(Box::new(Invert(Box::new(MaskedAutoregressive::new(3, &[10, 10], vec![0, 1, 2], 0, &mut rng).unwrap()))), opts, 8);
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
        Box::new(AffineCoupling::new(4, 2, &[8], 0, CouplingKind::Affine, &mut rng).unwrap()),
        Box::new(Permutation::reverse(4)),
        Box::new(ActNorm::new(4)),
        Box::new(MaskedAutoregressive::new(4, &[8], vec![0, 1, 2, 3], 0, &mut rng).unwrap()),
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
        Box::new(AffineCoupling::new(4, 2, &[8], 0, CouplingKind::Affine, &mut rng).unwrap()),
        Box::new(MaskedAutoregressive::new(4, &[8], vec![3, 2, 1, 0], 0, &mut rng).unwrap()),
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
    let m = MaskedAutoregressive::new(2, &[4], vec![0, 1], 0, &mut rng).unwrap();
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
    run(Box::new(MaskedAutoregressive::new(7, &[13, 9, 11], vec![3, 6, 0, 5, 1, 4, 2], 2, &mut rng).unwrap()), opts, 14);
}
