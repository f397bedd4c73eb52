//! Exact linear assignment (the Hungarian method with potentials, Kuhn 1955 and Munkres 1957,
//! in its shortest-augmenting-path form): the permutation that minimises a square cost matrix's
//! total. Flow matching pairs each batch's noise rows with its data rows by it (minibatch optimal
//! transport, Tong et al. 2023), so that the learned paths cross less.

/// For an `n × n` row-major `cost`, the column assigned to each row: a permutation minimising
/// `Σ_i cost[i][π(i)]`. `O(n³)` in the worst case.
///
/// # Panics
/// If `cost.len() != n * n` (an internal caller's bug, not bad data).
pub fn assign(cost: &[f64], n: usize) -> Vec<usize> {
    assert_eq!(cost.len(), n * n, "assignment needs a square cost matrix");
    // Potentials of rows (u) and columns (v), 1-based with a virtual column 0; owner[j] is the
    // row holding column j (0: none).
    let (mut u, mut v) = (vec![0.0f64; n + 1], vec![0.0f64; n + 1]);
    let (mut owner, mut via) = (vec![0usize; n + 1], vec![0usize; n + 1]);
    let (mut slack, mut visited) = (vec![0.0f64; n + 1], vec![false; n + 1]);
    for row in 1..=n {
        owner[0] = row;
        let mut col = 0;
        slack.fill(f64::INFINITY);
        visited.fill(false);
        // Grow a tree of tight edges from `row` until it reaches a free column.
        loop {
            visited[col] = true;
            let from = owner[col];
            let (mut delta, mut next) = (f64::INFINITY, 0);
            let costs = &cost[(from - 1) * n..from * n];
            for j in 1..=n {
                if visited[j] {
                    continue;
                }
                let reduced = costs[j - 1] - u[from] - v[j];
                if reduced < slack[j] {
                    slack[j] = reduced;
                    via[j] = col;
                }
                if slack[j] < delta {
                    delta = slack[j];
                    next = j;
                }
            }
            for j in 0..=n {
                if visited[j] {
                    u[owner[j]] += delta;
                    v[j] -= delta;
                } else {
                    slack[j] -= delta;
                }
            }
            col = next;
            if owner[col] == 0 {
                break;
            }
        }
        // Flip the augmenting path back to the root.
        while col != 0 {
            let prev = via[col];
            owner[col] = owner[prev];
            col = prev;
        }
    }
    let mut of_row = vec![0usize; n];
    for j in 1..=n {
        of_row[owner[j] - 1] = j - 1;
    }
    of_row
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::engine::Rng;

    fn total(cost: &[f64], n: usize, p: &[usize]) -> f64 {
        (0..n).map(|i| cost[i * n + p[i]]).sum()
    }

    /// Every permutation of `0..n`, by Heap's algorithm.
    fn permutations(n: usize) -> Vec<Vec<usize>> {
        fn heap(k: usize, a: &mut Vec<usize>, out: &mut Vec<Vec<usize>>) {
            if k <= 1 {
                out.push(a.clone());
                return;
            }
            for i in 0..k {
                heap(k - 1, a, out);
                let j = if k.is_multiple_of(2) { i } else { 0 };
                a.swap(j, k - 1);
            }
        }
        let mut out = Vec::new();
        heap(n, &mut (0..n).collect(), &mut out);
        out
    }

    #[test]
    fn finds_the_cheapest_permutation() {
        let mut rng = Rng::new(5);
        for n in 1..=7usize {
            for _ in 0..20 {
                // Ties (small integers) and real costs both.
                let cost: Vec<f64> = (0..n * n).map(|_| if n.is_multiple_of(2) { rng.below(4) as f64 } else { rng.normal() }).collect();
                let p = assign(&cost, n);
                let mut seen = p.clone();
                seen.sort_unstable();
                assert_eq!(seen, (0..n).collect::<Vec<_>>(), "not a permutation");
                let best = permutations(n).iter().map(|q| total(&cost, n, q)).fold(f64::INFINITY, f64::min);
                assert!((total(&cost, n, &p) - best).abs() < 1e-9, "n={n}: {} vs optimum {best}", total(&cost, n, &p));
            }
        }
    }

    #[test]
    fn pairs_shifted_points_with_their_twins() {
        // Points and the same points shifted slightly, shuffled: the optimum pairs each with its twin.
        let mut rng = Rng::new(6);
        let n = 200;
        let a: Vec<[f64; 2]> = (0..n).map(|_| [rng.normal() * 10.0, rng.normal() * 10.0]).collect();
        let order = rng.permutation(n);
        let b: Vec<[f64; 2]> = order.iter().map(|&i| [a[i][0] + 1e-3, a[i][1] - 1e-3]).collect();
        let cost: Vec<f64> = (0..n * n).map(|k| (a[k / n][0] - b[k % n][0]).powi(2) + (a[k / n][1] - b[k % n][1]).powi(2)).collect();
        let p = assign(&cost, n);
        for (i, &j) in p.iter().enumerate() {
            assert_eq!(order[j], i);
        }
    }
}
