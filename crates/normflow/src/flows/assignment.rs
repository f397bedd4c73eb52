//! Exact linear assignment: the permutation that minimises a square cost matrix's total, by
//! shortest augmenting paths with dual potentials (Jonker and Volgenant 1987, in the form of
//! Crouse 2016: one Dijkstra search per row over the columns not yet reached, potentials
//! updated only on the rows and columns a search scanned). Flow matching pairs each batch's
//! noise rows with its data rows by it (minibatch optimal transport, Tong et al. 2023), so that
//! the learned paths cross less.

/// For an `n × n` row-major `cost`, the column assigned to each row: a permutation minimising
/// `Σ_i cost[i][π(i)]`. `O(n³)` in the worst case; a search stops at the first free column it
/// reaches and prefers free columns among equally short paths, so most are short.
///
/// # Panics
/// If `cost.len() != n * n` (an internal caller's bug, not bad data), or for a NaN cost.
pub fn assign(cost: &[f64], n: usize) -> Vec<usize> {
    assert_eq!(cost.len(), n * n, "assignment needs a square cost matrix");
    const NONE: usize = usize::MAX;
    let (mut u, mut v) = (vec![0.0f64; n], vec![0.0f64; n]);
    let (mut col_of_row, mut row_of_col) = (vec![NONE; n], vec![NONE; n]);
    let mut shortest = vec![f64::INFINITY; n];
    let mut path = vec![NONE; n];
    let (mut scanned_rows, mut scanned_cols) = (Vec::with_capacity(n), Vec::with_capacity(n));
    let mut remaining: Vec<usize> = Vec::with_capacity(n);
    // Column reduction: each column's potential is its cheapest cost, and a column takes that
    // cheapest row when no other column took it first (an edge of reduced cost 0). Then each
    // row still free gets the potential of its cheapest reduced cost. Reduced costs stay
    // non-negative, and the searches below start from these ~60% of rows already paired.
    for (j, vj) in v.iter_mut().enumerate() {
        let (mut best, mut arg) = (f64::INFINITY, 0);
        for i in 0..n {
            if cost[i * n + j] < best {
                (best, arg) = (cost[i * n + j], i);
            }
        }
        *vj = best;
        if col_of_row[arg] == NONE && best.is_finite() {
            (col_of_row[arg], row_of_col[j]) = (j, arg);
        }
    }
    for (i, ui) in u.iter_mut().enumerate() {
        if col_of_row[i] == NONE {
            *ui = cost[i * n..(i + 1) * n].iter().zip(&v).map(|(c, vj)| c - vj).fold(f64::INFINITY, f64::min);
        }
    }
    let free: Vec<usize> = (0..n).filter(|&i| col_of_row[i] == NONE).collect();
    for root in free {
        // Dijkstra from `root` over reduced costs, until it reaches a free column.
        shortest.fill(f64::INFINITY);
        remaining.clear();
        remaining.extend((0..n).rev());
        scanned_rows.clear();
        scanned_cols.clear();
        let (mut row, mut distance) = (root, 0.0f64);
        let sink = loop {
            scanned_rows.push(row);
            let costs = &cost[row * n..(row + 1) * n];
            let base = distance - u[row];
            let (mut lowest, mut pick) = (f64::INFINITY, 0);
            for (k, &j) in remaining.iter().enumerate() {
                let reduced = base + costs[j] - v[j];
                if reduced < shortest[j] {
                    path[j] = row;
                    shortest[j] = reduced;
                }
                if shortest[j] < lowest || (shortest[j] == lowest && row_of_col[j] == NONE) {
                    lowest = shortest[j];
                    pick = k;
                }
            }
            assert!(lowest.is_finite(), "assignment costs must be finite");
            distance = lowest;
            let col = remaining.swap_remove(pick);
            scanned_cols.push(col);
            match row_of_col[col] {
                NONE => break col,
                next => row = next,
            }
        };
        // Potentials: keep every reduced cost non-negative and the path's edges tight.
        u[root] += distance;
        for &r in &scanned_rows[1..] {
            u[r] += distance - shortest[col_of_row[r]];
        }
        for &c in &scanned_cols {
            v[c] -= distance - shortest[c];
        }
        // Flip the path's edges from the sink back to the root.
        let mut col = sink;
        loop {
            let r = path[col];
            row_of_col[col] = r;
            let previous = std::mem::replace(&mut col_of_row[r], col);
            if r == root {
                break;
            }
            col = previous;
        }
    }
    col_of_row
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

    #[test]
    fn no_two_rows_gain_by_swapping_on_a_large_random_problem() {
        // Squared distances between 256 Gaussian points and 256 others, as a flow-matching batch
        // pairs them: no pair of rows can exchange columns for less.
        let mut rng = Rng::new(7);
        let n = 256;
        let pts = |rng: &mut Rng| -> Vec<[f64; 2]> { (0..n).map(|_| [rng.normal(), rng.normal()]).collect() };
        let (a, b) = (pts(&mut rng), pts(&mut rng));
        let cost: Vec<f64> = (0..n * n).map(|k| (a[k / n][0] - b[k % n][0]).powi(2) + (a[k / n][1] - b[k % n][1]).powi(2)).collect();
        let p = assign(&cost, n);
        let mut seen = p.clone();
        seen.sort_unstable();
        assert_eq!(seen, (0..n).collect::<Vec<_>>(), "not a permutation");
        for i in 0..n {
            for j in i + 1..n {
                let (now, swapped) = (cost[i * n + p[i]] + cost[j * n + p[j]], cost[i * n + p[j]] + cost[j * n + p[i]]);
                assert!(now <= swapped + 1e-9, "rows {i} and {j} gain {} by swapping", now - swapped);
            }
        }
        // The identity pairing is far from optimal here: the optimum is much cheaper.
        assert!(total(&cost, n, &p) < 0.5 * total(&cost, n, &(0..n).collect::<Vec<_>>()));
    }
}
