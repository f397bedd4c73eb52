//! Elementwise transformers evaluated [`LANES`] elements at a time (structure of arrays: every
//! quantity an array with one value per element, so the compiler turns each step into vector
//! instructions). This driver gathers elements and their parameters from the rows into lanes,
//! lets a [`LaneKernel`] evaluate them, and scatters the outputs, log-dets and records back.

use super::isa::{self, Kernel};
use super::Direction;
use crate::engine::fastmath::LANES;

/// One value per element of a group.
pub(crate) type Lanes = [f32; LANES];

/// Where a pass's elements lie: row `r`'s `n` transformed elements are
/// `values[r·stride + offset ..][..n]`, and its `params_per_dim · n` parameters are the
/// contiguous row `r` of the parameter matrix (parameter `p` of element `i` at `p·n + i`).
#[derive(Clone, Copy, Debug)]
pub(crate) struct RowLayout {
    /// Distance between rows of the values.
    pub stride: usize,
    /// Column of the first transformed element.
    pub offset: usize,
    /// Transformed elements per row.
    pub n: usize,
}

/// A transformer's forward and inverse maps on one group of [`LANES`] elements.
pub(crate) trait LaneKernel {
    /// Where the driver gathers the group's parameters: one [`Lanes`] per parameter.
    fn theta_mut(&mut self) -> &mut [Lanes];
    /// Values recorded per element for the backward pass (0: none).
    fn record_len(&self) -> usize;
    /// Maps the group `x` with the gathered parameters: outputs and log-dets (`FMA`: see
    /// [`super::isa::Kernel`]).
    fn eval<const FMA: bool>(&mut self, direction: Direction, x: &Lanes) -> (Lanes, Lanes);
    /// Writes the record of the group last evaluated: `record_len` [`Lanes`].
    fn save(&self, rec: &mut [Lanes]);
}

/// Floats a pass over `elements` elements records when each records `per_element` values:
/// records are kept by group of [`LANES`] elements, value by value (so that they move as whole
/// vectors), the last group padded.
pub(crate) fn record_size(elements: usize, per_element: usize) -> usize {
    elements.div_ceil(LANES) * LANES * per_element
}

/// The arguments of [`apply_rows`], passed on as one.
type Args<'a> = (Direction, RowLayout, &'a [f32], &'a [f32], &'a mut [f32], &'a mut [f32], &'a mut [f32]);

/// Maps the elements of `ld.len()` rows laid out as `layout` from `input` into `out` (entries
/// outside the layout are left alone) with parameters `theta`, adding each row's log-det into
/// `ld`. `record` ([`record_size`] values, or empty) receives what the backward pass reuses.
/// Runs with the widest vectors the CPU has ([`isa::dispatch`]).
#[allow(clippy::too_many_arguments)]
pub(crate) fn apply_rows<K: LaneKernel>(
    kernel: &mut K,
    direction: Direction,
    layout: RowLayout,
    input: &[f32],
    theta: &[f32],
    out: &mut [f32],
    record: &mut [f32],
    ld: &mut [f32],
) {
    isa::dispatch(Apply { kernel, args: (direction, layout, input, theta, out, record, ld) });
}

/// [`apply_rows`] as a kernel for [`isa::dispatch`].
struct Apply<'k, 'a, K> {
    kernel: &'k mut K,
    args: Args<'a>,
}

impl<K: LaneKernel> Kernel for Apply<'_, '_, K> {
    type Output = ();

    #[inline(always)]
    fn run<const FMA: bool>(self) {
        let Apply { kernel, args } = self;
        match args.1.n {
            n if n % 8 == 0 => run::<K, 8, FMA>(kernel, args),
            n if n % 4 == 0 => run::<K, 4, FMA>(kernel, args),
            n if n % 2 == 0 => run::<K, 2, FMA>(kernel, args),
            _ => run::<K, 1, FMA>(kernel, args),
        }
    }
}

/// Where the runs of one group start: `(row, index)` of each run's first element, in order.
/// Runs from `active` on are past the end and repeat the first run's position (their lanes
/// are computed and discarded).
///
/// Positions are computed as the iteration goes, not kept in an array: an array of them,
/// written a position at a time and read back as vectors, stalled on store forwarding.
#[derive(Clone, Copy)]
struct Runs<const G: usize> {
    first: (usize, usize),
    next: (usize, usize),
    n: usize,
    run: usize,
    active: usize,
}

impl<const G: usize> Iterator for Runs<G> {
    type Item = (usize, usize);

    #[inline(always)]
    fn next(&mut self) -> Option<(usize, usize)> {
        if self.run == LANES / G {
            return None;
        }
        self.run += 1;
        if self.run > self.active {
            return Some(self.first);
        }
        let at = self.next;
        self.next = if at.1 + G == self.n { (at.0 + 1, 0) } else { (at.0, at.1 + G) };
        Some(at)
    }
}

/// The groups of [`LANES`] consecutive elements of `rows` rows of `n`, each as its index and
/// its runs of `G` (which divides both `n` and [`LANES`], so a run never crosses a row);
/// `runs.active` of them hold elements (fewer only in the last group). Runs let the callers
/// move elements with fixed-length copies instead of one bounds-checked load per element and
/// parameter. An iterator rather than a function taking the loop body as a closure: the body
/// must be inlined into the kernel to be compiled for its instruction set ([`isa::Kernel`]),
/// and a closure is not reliably inlined.
struct Groups<const G: usize> {
    total: usize,
    n: usize,
    start: usize,
    /// The next group's first element.
    first: (usize, usize),
}

#[inline(always)]
fn groups<const G: usize>(rows: usize, n: usize) -> Groups<G> {
    Groups { total: rows * n, n, start: 0, first: (0, 0) }
}

impl<const G: usize> Iterator for Groups<G> {
    type Item = (usize, Runs<G>);

    #[inline(always)]
    fn next(&mut self) -> Option<(usize, Runs<G>)> {
        if self.start >= self.total {
            return None;
        }
        let active = (LANES / G).min((self.total - self.start) / G);
        let runs = Runs::<G> { first: self.first, next: self.first, n: self.n, run: 0, active };
        let group = self.start / LANES;
        self.start += LANES;
        // The next group starts after this one's runs.
        let mut past = runs;
        for _ in 0..active {
            past.next();
        }
        self.first = past.next;
        Some((group, runs))
    }
}

/// One vector of lanes from runs of `G` values, run `k` at `src[at[k]..]`. Built whole and
/// stored at once: the kernel's full-width loads of lanes stored a run at a time could not be
/// forwarded from those narrower stores, and stalled (most of a pass over 4-wide rows).
#[inline(always)]
fn gather<const G: usize, const FMA: bool>(src: &[f32], at: &[usize]) -> Lanes {
    if G == LANES / 2 {
        return join_halves::<FMA>(&src[at[0]..][..G], &src[at[1]..][..G]);
    }
    let mut lanes = [0.0f32; LANES];
    for (run, &a) in at.iter().enumerate() {
        lanes[run * G..][..G].copy_from_slice(&src[a..][..G]);
    }
    lanes
}

/// Two runs of half a vector each as one vector of lanes, joined in registers (the compiler
/// joins them on the stack otherwise, with the stall above). `AVX`: the code runs where the
/// CPU has AVX (the dispatcher's AVX2 and AVX-512 entry points, which pass `FMA = true`).
#[inline(always)]
fn join_halves<const AVX: bool>(low: &[f32], high: &[f32]) -> Lanes {
    let (low, high): (&[f32; LANES / 2], &[f32; LANES / 2]) = (low.try_into().unwrap(), high.try_into().unwrap());
    #[cfg(target_arch = "x86_64")]
    if AVX || cfg!(target_feature = "avx") {
        use std::arch::x86_64::{__m256, _mm256_loadu2_m128};
        // SAFETY: the CPU has AVX (see above); each pointer is the start of 4 readable f32s
        // (unaligned loads), and `__m256` and `Lanes` are both 8 f32s.
        return unsafe { std::mem::transmute::<__m256, Lanes>(_mm256_loadu2_m128(high.as_ptr(), low.as_ptr())) };
    }
    let mut lanes = [0.0f32; LANES];
    lanes[..LANES / 2].copy_from_slice(low);
    lanes[LANES / 2..].copy_from_slice(high);
    lanes
}

/// [`apply_rows`] with runs of `G` elements (see [`groups`]).
#[inline(always)]
fn run<K: LaneKernel, const G: usize, const FMA: bool>(kernel: &mut K, (direction, layout, input, theta, out, record, ld): Args<'_>) {
    let RowLayout { stride, offset, n } = layout;
    let per = kernel.theta_mut().len();
    let rec_len = kernel.record_len();
    for (group, runs) in groups::<G>(ld.len(), n) {
        // Where each run's values and parameters start (parameter p of an element is p·n
        // further on in its row).
        let (mut value_at, mut param_at) = ([0usize; LANES], [0usize; LANES]);
        for (run, (r, i)) in runs.enumerate() {
            (value_at[run], param_at[run]) = (r * stride + offset + i, r * per * n + i);
        }
        let count = LANES / G;
        let x = gather::<G, FMA>(input, &value_at[..count]);
        for (p, lanes) in kernel.theta_mut().iter_mut().enumerate() {
            *lanes = gather::<G, FMA>(&theta[p * n..], &param_at[..count]);
        }
        let (y, lds) = kernel.eval::<FMA>(direction, &x);
        for (run, (r, i)) in runs.enumerate().take(runs.active) {
            let lanes = run * G..(run + 1) * G;
            out[r * stride + offset + i..][..G].copy_from_slice(&y[lanes.clone()]);
            ld[r] += lds[lanes].iter().sum::<f32>();
        }
        if !record.is_empty() {
            kernel.save(record[group * rec_len * LANES..][..rec_len * LANES].as_chunks_mut().0);
        }
    }
}

/// A transformer's backward pass on one group of [`LANES`] elements, from what its forward or
/// inverse pass recorded.
pub(crate) trait LaneGradient {
    /// Where the driver gathers each element's record: one [`Lanes`] per recorded value.
    fn record_mut(&mut self) -> &mut [Lanes];
    /// Gradients for the group whose records were just gathered, given the domain-side values
    /// `x` (the input of a forward pass, the output of an inverse pass) and the loss gradients
    /// with respect to the pass's output and log-det: returns `∂L/∂input` and leaves `∂L/∂θ`
    /// in [`LaneGradient::theta_grad`].
    fn grad<const FMA: bool>(&mut self, direction: Direction, x: &Lanes, g_out: &Lanes, g_ld: &Lanes) -> Lanes;
    /// The last group's parameter gradients: one [`Lanes`] per parameter.
    fn theta_grad(&self) -> &[Lanes];
}

/// What [`backward_rows`] reads and writes.
pub(crate) struct Gradients<'a> {
    /// Domain-side values, laid out as the pass's input.
    pub x: &'a [f32],
    /// `∂L/∂output`, laid out as the pass's output.
    pub g_out: &'a [f32],
    /// `∂L/∂log-det` per row.
    pub g_ld: &'a [f32],
    /// What the pass recorded (see [`record_size`]).
    pub record: &'a [f32],
    /// `∂L/∂input` (only the layout's entries are written).
    pub g_in: &'a mut [f32],
    /// `∂L/∂θ`, laid out as the parameters (overwritten).
    pub g_theta: &'a mut [f32],
}

/// The backward pass of [`apply_rows`] for `g.g_ld.len()` rows laid out as `layout`, with the
/// widest vectors the CPU has.
pub(crate) fn backward_rows<K: LaneGradient>(kernel: &mut K, direction: Direction, layout: RowLayout, g: Gradients<'_>) {
    isa::dispatch(Backward { kernel, direction, layout, g });
}

/// [`backward_rows`] as a kernel for [`isa::dispatch`].
struct Backward<'k, 'a, K> {
    kernel: &'k mut K,
    direction: Direction,
    layout: RowLayout,
    g: Gradients<'a>,
}

impl<K: LaneGradient> Kernel for Backward<'_, '_, K> {
    type Output = ();

    #[inline(always)]
    fn run<const FMA: bool>(self) {
        let Backward { kernel, direction, layout, g } = self;
        match layout.n {
            n if n % 8 == 0 => backward_run::<K, 8, FMA>(kernel, direction, layout, g),
            n if n % 4 == 0 => backward_run::<K, 4, FMA>(kernel, direction, layout, g),
            n if n % 2 == 0 => backward_run::<K, 2, FMA>(kernel, direction, layout, g),
            _ => backward_run::<K, 1, FMA>(kernel, direction, layout, g),
        }
    }
}

#[inline(always)]
fn backward_run<K: LaneGradient, const G: usize, const FMA: bool>(
    kernel: &mut K,
    direction: Direction,
    layout: RowLayout,
    g: Gradients<'_>,
) {
    let RowLayout { stride, offset, n } = layout;
    let rec_len = kernel.record_mut().len();
    let per = kernel.theta_grad().len();
    let Gradients { x, g_out, g_ld, record, g_in, g_theta } = g;
    for (group, runs) in groups::<G>(g_ld.len(), n) {
        // Built a run at a time: gathering whole vectors as the forward pass does measured no
        // faster here, where the gradient's arithmetic hides the store-forwarding stall.
        let (mut xs, mut go, mut gl) = ([0.0f32; LANES], [0.0f32; LANES], [0.0f32; LANES]);
        kernel.record_mut().copy_from_slice(record[group * rec_len * LANES..][..rec_len * LANES].as_chunks().0);
        for (run, (r, i)) in runs.enumerate() {
            let lanes = run * G..(run + 1) * G;
            let at_value = r * stride + offset + i;
            xs[lanes.clone()].copy_from_slice(&x[at_value..][..G]);
            go[lanes.clone()].copy_from_slice(&g_out[at_value..][..G]);
            gl[lanes].fill(g_ld[r]);
        }
        let gi = kernel.grad::<FMA>(direction, &xs, &go, &gl);
        let gt = kernel.theta_grad();
        for (run, (r, i)) in runs.enumerate().take(runs.active) {
            let lanes = run * G..(run + 1) * G;
            g_in[r * stride + offset + i..][..G].copy_from_slice(&gi[lanes.clone()]);
            let first = r * per * n + i;
            for (p, lanes_p) in gt.iter().enumerate() {
                g_theta[first + p * n..][..G].copy_from_slice(&lanes_p[lanes.clone()]);
            }
        }
    }
}
