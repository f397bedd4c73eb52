//! Every instruction set this CPU has, forced in turn (`engine::isa::with_isa`): the transformer
//! kernels compiled for it pass the bijection harness, and agree with the portable code on
//! outputs, log-dets, gradients, normal draws and Adam steps.

use normflow::bijection::{AffineCoupling, Direction, MaskedAutoregressive, SplineShape, Tape, Transformer};
use normflow::engine::isa::{self, Isa};
use normflow::engine::Adam;
use normflow::testing::{check_bijection, randomize_params, spline_options, HarnessOptions};
use normflow::{Bijection, Matrix, Rng};

fn transformers() -> Vec<(Transformer, HarnessOptions)> {
    vec![
        (Transformer::Affine, HarnessOptions::default()),
        (Transformer::Additive, HarnessOptions::default()),
        (Transformer::Contractive, HarnessOptions::default()),
        (Transformer::Spline(SplineShape::default()), spline_options()),
        (Transformer::Spline(SplineShape { bins: 3, bound: 2.0 }), spline_options()),
    ]
}

/// A coupling over 12 columns (transformed runs of 6, 4-, 2- and 1-wide lane groups all
/// occur across the layers below) with random, non-identity parameters.
fn coupling(transformer: Transformer, split: usize) -> AffineCoupling {
    let mut rng = Rng::new(11);
    let mut b = AffineCoupling::new(12, split, &[16, 16], 0, transformer, &mut rng).unwrap();
    randomize_params(&mut b, 0.5, &mut rng);
    b
}

#[test]
fn each_instruction_set_passes_the_bijection_harness() {
    for isa in Isa::supported() {
        for (transformer, opts) in transformers() {
            isa::with_isa(isa, || {
                let mut b = coupling(transformer, 4);
                check_bijection(&mut b, &opts, &mut Rng::new(3)).unwrap_or_else(|e| panic!("{isa:?} {transformer:?}: {e}"));
                let mut rng = Rng::new(5);
                let mut maf = MaskedAutoregressive::new(5, &[15, 15], vec![2, 0, 3, 1, 4], 0, transformer, &mut rng).unwrap();
                let opts = HarnessOptions { forward_gradients: false, ..opts };
                check_bijection(&mut maf, &opts, &mut Rng::new(4)).unwrap_or_else(|e| panic!("{isa:?} MAF {transformer:?}: {e}"));
            });
        }
    }
}

/// Outputs, log-dets and gradients (input and parameters) of both directions.
fn pass_results(b: &AffineCoupling, x: &Matrix) -> Vec<Vec<f32>> {
    let mut out = Vec::new();
    for direction in [Direction::Forward, Direction::Inverse] {
        let (y, ld) = b.transform(x, None, direction).unwrap();
        let mut tape = Tape::new();
        let (y_train, _) = b.train_forward(x, None, direction, &mut tape).unwrap();
        let g_out = Matrix::from_vec(x.rows(), x.cols(), y_train.as_slice().iter().map(|v| 0.3 * v + 0.1).collect());
        let g_ld: Vec<f32> = (0..x.rows()).map(|r| 1.0 - 0.01 * r as f32).collect();
        let mut grads = vec![0.0; b.num_params()];
        let g_in = b.backward(direction, &mut tape, g_out, &g_ld, &mut grads).unwrap();
        out.extend([y.as_slice().to_vec(), ld, g_in.as_slice().to_vec(), grads]);
    }
    out
}

#[test]
fn each_instruction_set_computes_what_the_portable_code_does() {
    let mut rng = Rng::new(9);
    // Inside and outside the spline's bound, both signs.
    let x = Matrix::from_vec(37, 12, (0..37 * 12).map(|_| 2.5 * rng.normal() as f32).collect());
    for (transformer, _) in transformers() {
        for split in [4, 6, 11] {
            let b = coupling(transformer, split);
            let want = isa::with_isa(Isa::Portable, || pass_results(&b, &x));
            for isa in Isa::supported() {
                let got = isa::with_isa(isa, || pass_results(&b, &x));
                for (which, (g, w)) in got.iter().zip(&want).enumerate() {
                    // Fused multiply-adds round once where the portable code rounds twice, and
                    // on AVX-512 the conditioners' narrow layers sum their inputs in order in
                    // register tiles where the portable path's `gemm` sums them in blocks; the
                    // spline's inverse gradients amplify both through cancellations (1.6e-4 of
                    // the largest entry seen), so the tolerance scales with the largest entry of
                    // each result. A wrong kernel is off by far more.
                    let scale = w.iter().fold(1.0f32, |m, v| m.max(v.abs()));
                    for (i, (&g, &w)) in g.iter().zip(w).enumerate() {
                        let tol = 5e-4 * scale;
                        assert!((g - w).abs() <= tol, "{isa:?} {transformer:?} split {split}: result {which}[{i}] {g} vs portable {w}");
                    }
                }
            }
        }
    }
}

#[test]
fn each_instruction_set_draws_the_same_normals_and_takes_the_same_adam_steps() {
    let draws = |isa| {
        isa::with_isa(isa, || {
            let mut z = vec![0.0f32; 1001];
            Rng::new(7).fill_normal(&mut z);
            z
        })
    };
    let adam_steps = |isa| {
        isa::with_isa(isa, || {
            let n = 70_001;
            let mut p: Vec<f32> = (0..n).map(|i| (i % 23) as f32 * 0.1 - 1.0).collect();
            let g: Vec<f32> = (0..n).map(|i| (i % 19) as f32 * 0.07 - 0.6).collect();
            let mut adam = Adam::new(n, 0.01);
            for _ in 0..3 {
                adam.begin_step();
                adam.update(0, &mut p, &g, 0.7);
            }
            p
        })
    };
    let (want_z, want_p) = (draws(Isa::Portable), adam_steps(Isa::Portable));
    assert!(want_z.iter().all(|z| z.is_finite()) && want_z.iter().any(|&z| z.abs() > 2.0));
    for isa in Isa::supported() {
        let z = draws(isa);
        for (i, (&g, &w)) in z.iter().zip(&want_z).enumerate() {
            assert!((g - w).abs() <= 1e-5 * (1.0 + w.abs()), "{isa:?}: draw {i} {g} vs portable {w}");
        }
        // No operation of Adam's is fused or reordered: every path gives the same bits.
        assert_eq!(adam_steps(isa), want_p, "{isa:?}");
    }
}
