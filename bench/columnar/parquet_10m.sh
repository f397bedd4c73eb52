#!/usr/bin/env bash
# Peak memory and time of `normflow log-prob` on a Parquet file of 10 million rows (issue 20).
# A model of shuttle's 9 normal-row columns (../shared/data), 10M rows sampled from it into
# Parquet (zstd), then scored streaming to a Parquet output. Peak RSS from /usr/bin/time -v.
# Usage: bash bench/columnar/parquet_10m.sh [WORKDIR]
set -euo pipefail
cd "$(dirname "$0")/../.."
B=$PWD/target/release/normflow
W=${1:-$(mktemp -d)}
mkdir -p "$W"
python3 - "$W" <<'PY'
import gzip, sys
rows = [l.strip().split(",") for l in gzip.open("../shared/data/odds/shuttle.csv.gz", "rt")][1:]
with open(sys.argv[1] + "/shuttle-normal.csv", "w") as f:
    f.write(",".join(f"x{i}" for i in range(9)) + "\n")
    f.writelines(",".join(r[:9]) + "\n" for r in rows if r[9] == "0")
PY
"$B" train "$W/shuttle-normal.csv" --epochs 5 -q -o "$W/shuttle.safetensors"
"$B" sample "$W/shuttle.safetensors" -n 10000000 --seed 1 -o "$W/big.parquet"
echo "# input: $(du -h "$W/big.parquet" | cut -f1) Parquet, 10,000,000 rows x 9 columns"
/usr/bin/time -v "$B" log-prob "$W/shuttle.safetensors" "$W/big.parquet" -o "$W/lp.parquet" 2> "$W/time.txt"
grep -E "Elapsed|Maximum resident" "$W/time.txt"
