//! Training and evaluation with the split-bf16 products (`engine::ProductPrecision::Bf16x3`,
//! the default) against `f32` ones: a flow still learns a known density to within the same margin as with `f32`
//! products, and its log-densities stay within a small, stated distance of the `f32` ones. On a
//! CPU without AMX the split precision falls back to `f32`, and the two agree exactly.

use normflow::data::toy;
use normflow::engine::{split_products_available, with_product_precision, ProductPrecision};
use normflow::flows::RealNvpConfig;
use normflow::train::{fit, FitConfig};
use normflow::{Flow, Matrix, Rng};

fn trained(precision: ProductPrecision, train: &Matrix) -> Flow {
    // Hidden layers of 128: the middle products go to the product kernel (layers of at most 64
    // outputs run as register tiles instead) and are tile-sized (at least 32 on each side).
    let flow = RealNvpConfig::new(2).with_layers(6).with_hidden(vec![128, 128]).init(&mut Rng::new(0)).unwrap();
    let config = FitConfig { lr: 2e-3, max_epochs: 15, ..FitConfig::default() };
    with_product_precision(precision, || fit(flow, train, None, &config, &mut |_| {})).unwrap().0
}

fn log_probs(flow: &Flow, x: &Matrix, precision: ProductPrecision) -> Vec<f32> {
    with_product_precision(precision, || flow.log_prob(x, None)).unwrap()
}

fn mean_nll(lp: &[f32]) -> f64 {
    -lp.iter().map(|&v| f64::from(v)).sum::<f64>() / lp.len() as f64
}

fn largest_difference(a: &[f32], b: &[f32]) -> f32 {
    a.iter().zip(b).map(|(p, q)| (p - q).abs()).fold(0.0f32, f32::max)
}

#[test]
fn realnvp_trained_with_split_products_learns_as_well_as_with_f32_and_log_densities_stay_close() {
    // Eight Gaussians on a circle: the couplings must bend the space (a Gaussian would be
    // learnt by the standardisation alone, leaving the networks' products unused).
    let (train, test) = (toy::generate("8gaussians", 20_000, 1).unwrap(), toy::generate("8gaussians", 40_000, 2).unwrap());
    let entropy = toy::true_nll("8gaussians", &test).unwrap();
    let (split_flow, plain_flow) = (trained(ProductPrecision::Bf16x3, &train), trained(ProductPrecision::F32, &train));
    let split = log_probs(&split_flow, &test, ProductPrecision::Bf16x3);
    let (split_nll, plain_nll) = (mean_nll(&split), mean_nll(&log_probs(&plain_flow, &test, ProductPrecision::F32)));
    eprintln!("test NLL: split products {split_nll:.4}, f32 {plain_nll:.4}, entropy {entropy:.4}");
    // This small RealNVP ends about 0.2 nats above the truth after 15 epochs with either
    // precision; the split products must land as close as the f32 ones.
    assert!(split_nll - entropy < 0.3, "split products: test NLL {split_nll} vs true {entropy}");
    assert!((split_nll - plain_nll).abs() < 0.03, "split products: test NLL {split_nll} vs f32 training's {plain_nll}");
    // The same model evaluated both ways: the products' rounding stays far below a nat.
    let same_model = largest_difference(&split, &log_probs(&split_flow, &test, ProductPrecision::F32));
    eprintln!("largest |log p (split) - log p (f32)| of one model over {} rows: {same_model:.2e}", test.rows());
    assert!(same_model < 1e-3, "split-product log-densities differ from f32 ones by {same_model}");
    // The two trainings took different paths exactly when the split products ran.
    let paths = largest_difference(&split, &log_probs(&plain_flow, &test, ProductPrecision::Bf16x3));
    if split_products_available() {
        assert!(paths > 0.0, "with AMX the split products must have run in training");
    } else {
        assert_eq!((same_model, paths), (0.0, 0.0), "without AMX the split precision falls back to f32 exactly");
    }
}
