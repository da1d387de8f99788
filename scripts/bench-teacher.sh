#!/usr/bin/env bash
# Embedded teacher vs llama.cpp on the same GGUF and thread count, in one run:
# builds llama-bench (cached) and mediflow (release), then `mediflow bench teacher`.
set -euo pipefail
cd "$(dirname "$0")/.."
BIN_DIR=$(scripts/build-llama-bench.sh | tail -n 1)
cargo build --release --quiet
exec target/release/mediflow bench teacher --llama-bench "$BIN_DIR/llama-bench" "$@"
