#!/usr/bin/env bash
# A soak of `normflow serve`: the demo model, 64 clients of ROWS rows each (default 1) for
# MINUTES minutes (default 10), resident memory and open file descriptors of the server every
# 30 s, and the load generator's report at the end (every status must be 200).
# Usage: bash bench/serve/soak.sh [MINUTES] [ROWS]
set -euo pipefail
minutes=${1:-10}
rows=${2:-1}
nf=${NORMFLOW:-target/release/normflow}
work=$(mktemp -d)
trap 'kill $server 2>/dev/null || true; rm -rf "$work"' EXIT
"$nf" demo --steps 2000 --out "$work" > /dev/null 2>&1
"$nf" serve "$work/model.safetensors" --port 0 2> "$work/serve.log" &
server=$!
for _ in $(seq 100); do grep -q http:// "$work/serve.log" && break; sleep 0.1; done
addr=$(grep -o 'http://[0-9.:]*' "$work/serve.log" | head -1)
echo "# $(date -u); $(lscpu | grep 'Model name' | tr -s ' '); server $addr pid $server; $minutes min at 64 clients x $rows rows"
"$nf" loadtest "$addr/v1/models/model/log-prob" --concurrency 64 --duration "${minutes}m" --rows "$rows" --json > "$work/report.json" &
load=$!
start=$(date +%s)
while kill -0 $load 2>/dev/null; do
  rss=$(awk '/VmRSS/ {print $2}' /proc/$server/status)
  fds=$(ls /proc/$server/fd | wc -l)
  echo "t=$(( $(date +%s) - start ))s rss_kb=$rss fds=$fds"
  sleep 30
done
wait $load
cat "$work/report.json"
