#!/usr/bin/env bash
# Adaptive concurrency against the mock teacher with a knee, in one run per case: for each
# knee (service time 40 ms x (1 + n/2K), and x (n/K)^2 past K: throughput peaks at K in
# flight) and each job size, `mediflow bench concurrency` runs the fixed levels 3K/4, K and
# 5K/4 and the adaptive controller, in rounds, on the same job (the plan's first N items,
# judge off), and prints the adaptive tokens/s as a fraction of the best fixed level with
# the spread over the rounds. Everything on 127.0.0.1.
#
# Environment: KNEES (default "8 24 96"), ITEMS (default "600 3000"), ROUNDS_600 (3),
# ROUNDS_3000 (2), MEDIFLOW_BIN (default: cargo build --release), PORT (18124).
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${MEDIFLOW_BIN:-}" ]; then
  cargo build --release --quiet
  MEDIFLOW_BIN=target/release/mediflow
fi
PORT=${PORT:-18124}
DIR=$(mktemp -d)
cat >"$DIR/mock.toml" <<TOML
name = "concurrency-mock"
seed = 7
items = 3000
[teacher]
kind = "openai"
model = "mock"
base_urls = ["http://127.0.0.1:$PORT/v1"]
TOML
MOCK=
trap '[ -n "$MOCK" ] && kill $MOCK 2>/dev/null; rm -rf "$DIR"' EXIT
for knee in ${KNEES:-8 24 96}; do
  "$MEDIFLOW_BIN" mock-teacher --addr "127.0.0.1:$PORT" --latency-ms 40 --knee "$knee" >/dev/null 2>&1 &
  MOCK=$!
  sleep 1
  levels="$((knee * 3 / 4)),$knee,$((knee * 5 / 4))"
  for items in ${ITEMS:-600 3000}; do
    rounds_var="ROUNDS_$items"
    rounds=${!rounds_var:-2}
    echo "== knee $knee, $items items, levels $levels, $rounds rounds"
    "$MEDIFLOW_BIN" bench concurrency --config "$DIR/mock.toml" --items "$items" \
      --levels "$levels" --stop-below 0 --rounds "$rounds" 2>"$DIR/err.txt" |
      grep -E "^(best fixed|adaptive|round [0-9]+/[0-9]+: adaptive \()"
    grep -E "^round [0-9]+/[0-9]+: adaptive: " "$DIR/err.txt" | cut -c1-400 || true
  done
  kill $MOCK; wait $MOCK 2>/dev/null || true; MOCK=
done
