#!/usr/bin/env bash
# Adaptive concurrency against a real llama.cpp server, in one run: starts llama-server
# (built by scripts/build-llama-bench.sh from the llama.cpp sources that the PyPI sdist of
# llama-cpp-python vendors) on 127.0.0.1 with many parallel slots, serving the default
# SmolLM2 GGUF, then `mediflow bench concurrency`: a fixed-concurrency sweep and mediflow's
# adaptive run, each on the same items, with the adaptive tokens/s as a fraction of the
# best sweep point. Arguments are passed to `mediflow bench concurrency`.
#
# Environment: LLAMA_BIN_DIR (a llama.cpp bin dir, e.g. a CUDA build; default: build the
# CPU one), MEDIFLOW_BIN (default: cargo build --release), MODEL (default: the embedded
# teacher's default GGUF, pulled if missing), SLOTS (default 64), CTX_PER_SLOT (4096),
# NGL (GPU layers, default 0), PORT (8090), THREADS (nproc).
set -euo pipefail
cd "$(dirname "$0")/.."
BIN_DIR=${LLAMA_BIN_DIR:-$(scripts/build-llama-bench.sh | tail -n 1)}
if [ -z "${MEDIFLOW_BIN:-}" ]; then
  cargo build --release --quiet
  MEDIFLOW_BIN=target/release/mediflow
fi
MODEL=${MODEL:-$("$MEDIFLOW_BIN" model pull | tail -n 1)}
SLOTS=${SLOTS:-64}
CTX_PER_SLOT=${CTX_PER_SLOT:-4096}
PORT=${PORT:-8090}
THREADS=${THREADS:-$(nproc)}
LOG=$(mktemp)
# --slot-save-path lets the bench erase the slots' prompt caches between its runs;
# --cache-ram 0 turns off the host-memory prompt cache, which that erase does not reach
# (on by default, 8 GiB: a later run on the same work found its earlier prompts there).
SLOT_DIR=$(mktemp -d)
"$BIN_DIR/llama-server" -m "$MODEL" --host 127.0.0.1 --port "$PORT" -np "$SLOTS" \
  -c $((SLOTS * CTX_PER_SLOT)) -t "$THREADS" -ngl "${NGL:-0}" --metrics \
  --slot-save-path "$SLOT_DIR" --cache-ram 0 >"$LOG" 2>&1 &
SERVER=$!
trap 'kill $SERVER 2>/dev/null; wait $SERVER 2>/dev/null; rm -rf "$LOG" "$SLOT_DIR"' EXIT
for _ in $(seq 1 120); do
  curl -sf "http://127.0.0.1:$PORT/health" >/dev/null && break
  kill -0 $SERVER 2>/dev/null || { cat "$LOG"; exit 1; }
  sleep 0.5
done
echo "llama-server: $SLOTS slots x $CTX_PER_SLOT context, $THREADS threads, -ngl ${NGL:-0}, $MODEL" >&2
"$MEDIFLOW_BIN" bench concurrency --config configs/bench-llama-server.toml \
  --teacher-url "http://127.0.0.1:$PORT/v1" "$@"
