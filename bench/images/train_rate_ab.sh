#!/usr/bin/env bash
# Training rate of two normflow binaries, alternated on the same machine in one sitting:
# Glow on MNIST with the default 64 hidden channels (batch 64, 150 steps) and with issue 15's
# comparison model (256 hidden channels, batch 256, 12 steps). Prints each run's images/s
# (`step_images_per_second` leaves out start-up and evaluation).
# usage: bench/images/train_rate_ab.sh OLD_BINARY NEW_BINARY [ROUNDS]
set -euo pipefail
old=$1 new=$2 rounds=${3:-2}
data=${MNIST:-$(cd "$(dirname "$0")/../../../shared/data/mnist" && pwd)/train-images-idx3-ubyte.gz}
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
run() { # name binary hidden batch steps
  "$2" image train "$data" --hidden "$3" --steps 16 --batch-size "$4" --max-steps "$5" --eval-every 100000 \
    --checkpoint-minutes 0 -o "$tmp/m.safetensors" --json 2>/dev/null | tail -1 |
    python3 -c "import json,sys; d=json.load(sys.stdin); print('$1 hidden $3 batch $4: %.1f images/s (steps only %.1f)' % (d['images_per_second'], d['step_images_per_second']))"
}
for _ in $(seq "$rounds"); do
  for b in old new; do run "$b" "${!b}" 64 64 150; done
done
for b in old new; do run "$b" "${!b}" 256 256 12; done
