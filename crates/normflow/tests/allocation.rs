//! The steady-state training step does not allocate: a counting global allocator watches a few
//! steps after warm-up, for each preset flow, on one thread and on several.
//!
//! Allocations made inside the matrix-product kernel (the `gemm` crate's per-call packing
//! scratch, which it does not let callers supply) are counted apart and reported, not failed.

use std::alloc::{GlobalAlloc, Layout, System};
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};

use normflow::engine::inside_product_kernel;
use normflow::flows::{MafConfig, NsfConfig, RealNvpConfig};
use normflow::train::Trainer;
use normflow::{Flow, Matrix, Rng};

/// Counts allocations (and reallocations) made while `COUNTING` is on, by any thread: those
/// of the engine in `ALLOCATIONS`/`BYTES`, those inside the product kernel in `KERNEL`.
struct Counting;

static COUNTING: AtomicBool = AtomicBool::new(false);
static ALLOCATIONS: AtomicUsize = AtomicUsize::new(0);
static BYTES: AtomicUsize = AtomicUsize::new(0);
static KERNEL: AtomicUsize = AtomicUsize::new(0);

fn record(size: usize) {
    if COUNTING.load(Ordering::Relaxed) {
        if inside_product_kernel() {
            KERNEL.fetch_add(1, Ordering::Relaxed);
        } else {
            ALLOCATIONS.fetch_add(1, Ordering::Relaxed);
            BYTES.fetch_add(size, Ordering::Relaxed);
        }
    }
}

unsafe impl GlobalAlloc for Counting {
    unsafe fn alloc(&self, layout: Layout) -> *mut u8 {
        record(layout.size());
        unsafe { System.alloc(layout) }
    }
    unsafe fn dealloc(&self, ptr: *mut u8, layout: Layout) {
        unsafe { System.dealloc(ptr, layout) }
    }
    unsafe fn realloc(&self, ptr: *mut u8, layout: Layout, new_size: usize) -> *mut u8 {
        record(new_size);
        unsafe { System.realloc(ptr, layout, new_size) }
    }
}

#[global_allocator]
static GLOBAL: Counting = Counting;

/// Builds one preset flow from a generator.
type MakeFlow = dyn Fn(&mut Rng) -> Flow;

fn data(rows: usize, dim: usize) -> Matrix {
    let mut rng = Rng::new(7);
    Matrix::from_vec(rows, dim, (0..rows * dim).map(|_| rng.normal() as f32).collect())
}

/// Allocations (engine count, engine bytes, kernel count) made by `steps` training steps after
/// `warmup` untimed ones.
fn allocations_per_steps(mut flow: Flow, threads: usize, warmup: usize, steps: usize) -> (usize, usize, usize) {
    let x = data(256, flow.dim());
    let mut trainer = Trainer::new(&flow, 1e-3);
    trainer.threads = threads;
    for _ in 0..warmup {
        trainer.step(&mut flow, &x, None).unwrap();
    }
    ALLOCATIONS.store(0, Ordering::SeqCst);
    BYTES.store(0, Ordering::SeqCst);
    KERNEL.store(0, Ordering::SeqCst);
    COUNTING.store(true, Ordering::SeqCst);
    for _ in 0..steps {
        trainer.step(&mut flow, &x, None).unwrap();
    }
    COUNTING.store(false, Ordering::SeqCst);
    (ALLOCATIONS.load(Ordering::SeqCst), BYTES.load(Ordering::SeqCst), KERNEL.load(Ordering::SeqCst))
}

#[test]
fn steady_state_training_steps_do_not_allocate() {
    let mut rng = Rng::new(0);
    let flows: Vec<(&str, Box<MakeFlow>)> = vec![
        ("realnvp", Box::new(|r: &mut Rng| RealNvpConfig::new(8).with_layers(4).with_hidden(vec![32, 32]).init(r).unwrap())),
        ("maf", Box::new(|r: &mut Rng| MafConfig::new(8).with_layers(3).with_hidden(vec![32, 32]).init(r).unwrap())),
        ("nsf", Box::new(|r: &mut Rng| NsfConfig::new(8).with_layers(3).with_hidden(vec![32, 32]).init(r).unwrap())),
        (
            "nsf-ar",
            Box::new(|r: &mut Rng| NsfConfig::new(8).with_layers(2).with_hidden(vec![32, 32]).with_autoregressive(true).init(r).unwrap()),
        ),
        (
            "realnvp+lu+bn",
            Box::new(|r: &mut Rng| {
                RealNvpConfig::new(8).with_layers(2).with_hidden(vec![32]).with_lu_linear(true).with_batch_norm(true).init(r).unwrap()
            }),
        ),
        ("nsf-residual", Box::new(|r: &mut Rng| NsfConfig::new(8).with_layers(2).with_residual_blocks(2).init(r).unwrap())),
    ];
    let mut report = Vec::new();
    for (name, make) in &flows {
        for threads in [1, 2] {
            let (count, bytes, kernel) = allocations_per_steps(make(&mut rng), threads, 3, 5);
            println!("{name}, {threads} thread(s), 5 steps: {count} allocations ({bytes} bytes); inside the product kernel: {kernel}");
            report.push((name, threads, count, bytes));
        }
    }
    assert!(report.iter().all(|r| r.2 == 0), "steady-state steps allocated: {report:?}");
}
