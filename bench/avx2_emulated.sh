#!/usr/bin/env bash
# Issue 16's AVX2-only criteria, approximated on an AVX-512 machine: this commit built with
# `gemm` limited to its AVX2 + FMA kernels (no `x86-v4` feature) and run with NORMFLOW_ISA=avx2
# (normflow's own lanes and tilings at 8 floats) and NORMFLOW_PRODUCTS=f32 (no AMX tiles), so
# that every instruction it runs is one an AVX2-only CPU has; beside it, alternating, the main
# before issue 16 (gemm 0.18, AVX2 products only) under the same caps. The old main built with
# `target-cpu=native` (its .cargo/config.toml); here it is built with `target-cpu=x86-64-v3`
# (AVX2 + FMA, what native means on an AVX2-only CPU), or its element-wise code would use this
# CPU's AVX-512. It measures the code paths, not an AVX2-only chip: the caches, clocks and port
# layout are this CPU's.
# 1. `bench/ab.py` OLD NEW at S and M (4 rounds) and L (2 rounds): ratios new / old.
# 2. Training at L against the product probe: `normflow bench --gemm-probe --sizes L`, the
#    training rate (train_gflops) over the probe's all-threads rate at its best shape.
# Usage: bash bench/avx2_emulated.sh [OLD_REV]   (default: 97e1082^, the main before gemm 0.19)
set -euo pipefail
old_rev=${1:-97e1082^}
root=$(git rev-parse --show-toplevel)
work=${WORK:-/tmp/nf-avx2-emulated}
mkdir -p "$work"
build() { # REV DIR [strip (gemm without x86-v4) | v3 (target-cpu=x86-64-v3)]
  rm -rf "$work/$2"
  git -C "$root" worktree add -q --detach "$work/$2" "$1"
  if [ "${3:-}" = strip ]; then
    sed -i 's/features = \["std", "x86-v4"\]/features = ["std"]/' "$work/$2/crates/normflow/Cargo.toml"
    grep -q 'features = \["std"\]' "$work/$2/crates/normflow/Cargo.toml"
  fi
  local flags=""
  if [ "${3:-}" = v3 ]; then flags="-C target-cpu=x86-64-v3"; fi
  (cd "$work/$2" && RUSTFLAGS="$flags" CARGO_TARGET_DIR="$work/target-$2" cargo build --release -q -p normflow-cli)
  git -C "$root" worktree remove --force "$work/$2"
}
build "$old_rev" old v3
build HEAD new strip
old="$work/target-old/release/normflow"
new="$work/target-new/release/normflow"
export NORMFLOW_ISA=avx2 NORMFLOW_PRODUCTS=f32
echo "# $(date -u); $(lscpu | grep 'Model name' | tr -s ' '); $(nproc) CPUs; flags: $(lscpu | grep -oE 'avx512f|amx_bf16' | sort -u | tr '\n' ' ')"
echo "# old = $(git -C "$root" rev-parse --short "$old_rev") (target-cpu=x86-64-v3), new = $(git -C "$root" rev-parse --short HEAD) without gemm's x86-v4; both with NORMFLOW_ISA=avx2 NORMFLOW_PRODUCTS=f32"
python3 "$root/bench/ab.py" "$old" "$new" --sizes S,M --rounds 4 | grep -v '^# round'
python3 "$root/bench/ab.py" "$old" "$new" --sizes L --rounds 2 | grep -v '^# round'
echo "# new binary: training at L against its product probe"
"$new" bench --gemm-probe --flows coupling,maf,nsf --sizes L --steps 30 --reps 2 | python3 -c '
import json, sys
rows = [json.loads(l) for l in sys.stdin]
probe = max(r["gflops_all_threads"] for r in rows if r.get("probe") == "gemm")
for r in rows:
    if r.get("probe"):
        print("#", json.dumps(r))
for r in rows:
    if "flow" in r:
        rate = r["train_gflops"]
        print("%s L: training %.1f GFLOP/s = %.0f%% of the product probe (%.1f)" % (r["flow"], rate, 100 * rate / probe, probe))
'
