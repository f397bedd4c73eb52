//! Every bijection of the registry through the harness, and through the wrappers: a hook
//! (`data_init`, `recalibrate`, `set_training`, `tracks_statistics`, `dequantized_columns`)
//! called on `Invert(b)` or on a `Chain` holding `b` reaches `b`.

use normflow::bijection::{Chain, Direction, Invert, Tape};
use normflow::testing::{check_bijection, registry, Case};
use normflow::{Bijection, Matrix, Rng};

fn rows(n: usize, d: usize, seed: u64) -> Matrix {
    let mut rng = Rng::new(seed);
    Matrix::from_vec(n, d, (0..n * d).map(|_| (0.5 * rng.normal()) as f32).collect())
}

fn context(case: &Case, n: usize) -> Option<Matrix> {
    (case.options.context_dim > 0).then(|| rows(n, case.options.context_dim, 99))
}

/// Every saved tensor (parameters and buffers such as statistics), in order.
fn state(b: &dyn Bijection) -> Vec<f32> {
    let mut out = Vec::new();
    b.tensors("", &mut out);
    out.into_iter().flat_map(|(_, v)| v).collect()
}

/// `b` alone and in each wrapper, built from one seed.
fn wrapped(case: &Case) -> Vec<(&'static str, Box<dyn Bijection>)> {
    let build = || (case.build)(&mut Rng::new(5));
    vec![
        ("alone", build()),
        ("inverted", Box::new(Invert(build()))),
        ("chained", Box::new(Chain::new(vec![build()]).unwrap())),
        ("inverted in a chain", Box::new(Chain::new(vec![Box::new(Invert(build())) as Box<dyn Bijection>]).unwrap())),
    ]
}

/// Whether the training pass in `direction` (the inner layer's density direction) answers
/// differently in training mode.
fn training_mode_matters(b: &mut dyn Bijection, x: &Matrix, ctx: Option<&Matrix>, direction: Direction) -> bool {
    let run = |b: &dyn Bijection| b.train_forward(x, ctx, direction, &mut Tape::new()).unwrap().0.into_vec();
    b.set_training(false);
    let off = run(b);
    b.set_training(true);
    let on = run(b);
    b.set_training(false);
    off != on
}

#[test]
fn every_registered_bijection_passes_the_harness() {
    for (k, case) in registry().iter().enumerate() {
        let mut b = (case.build)(&mut Rng::new(k as u64));
        check_bijection(b.as_mut(), &case.options, &mut Rng::new(100 + k as u64)).unwrap_or_else(|e| panic!("{}: {e}", case.name));
    }
}

#[test]
fn every_hook_reaches_a_bijection_through_invert_and_chain() {
    for case in registry() {
        let dim = (case.build)(&mut Rng::new(5)).dim();
        let (x, ctx) = (rows(64, dim, 1), context(&case, 64));
        let ctx = ctx.as_ref();
        // Whether a hook changes the layer's state, each on a freshly built one.
        let changes = |b: &mut dyn Bijection, hook: fn(&mut dyn Bijection, &Matrix, Option<&Matrix>)| {
            let before = state(b);
            hook(b, &x, ctx);
            state(b) != before
        };
        let data_init: fn(&mut dyn Bijection, &Matrix, Option<&Matrix>) = |b, x, c| drop(b.data_init(x, c).unwrap());
        let recalibrate: fn(&mut dyn Bijection, &Matrix, Option<&Matrix>) = |b, x, c| drop(b.recalibrate(x, c).unwrap());
        let fresh = || wrapped(&case).remove(0).1;
        let mut reference = fresh();
        let expect_statistics = reference.tracks_statistics();
        let expect_columns = reference.dequantized_columns();
        let data_init_acts = changes(fresh().as_mut(), data_init);
        let recalibrate_acts = changes(fresh().as_mut(), recalibrate);
        let mode_acts = training_mode_matters(reference.as_mut(), &x, ctx, Direction::Inverse);
        for (k, (how, mut b)) in wrapped(&case).into_iter().enumerate() {
            // Each hook is checked on a freshly built wrapper (`b`, `again`, `fresh`).
            let what = format!("{} ({how})", case.name);
            assert_eq!(b.tracks_statistics(), expect_statistics, "{what}: tracks_statistics");
            assert_eq!(b.dequantized_columns(), expect_columns, "{what}: dequantized_columns");
            assert_eq!(changes(b.as_mut(), data_init), data_init_acts, "{what}: data_init");
            let mut again = wrapped(&case).remove(k).1;
            assert_eq!(changes(again.as_mut(), recalibrate), recalibrate_acts, "{what}: recalibrate");
            // The inner layer's density direction is the wrapper's forward direction when inverted.
            let direction = if how.starts_with("inverted") { Direction::Forward } else { Direction::Inverse };
            let mut fresh = wrapped(&case).remove(k).1;
            if fresh.train_forward(&x, ctx, direction, &mut Tape::new()).is_err() {
                // An inverted autoregressive layer has no training pass in that direction.
                continue;
            }
            assert_eq!(training_mode_matters(fresh.as_mut(), &x, ctx, direction), mode_acts, "{what}: set_training");
        }
    }
}
