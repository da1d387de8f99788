#!/usr/bin/env bash
# mediflow's deduplication vs datasketch on the same N synthetic records, in one output:
# sets up a venv with datasketch (cached), builds mediflow (release), exports the records,
# runs scripts/dedup_reference.py on them, then `mediflow bench dedup --reference-results`.
# usage: scripts/bench-dedup.sh [N]   (default 1000000)
set -euo pipefail
cd "$(dirname "$0")/.."
N=${1:-1000000}
CACHE=${MEDIFLOW_CACHE:-$HOME/.cache/mediflow}
VENV=$CACHE/venv-dedup
if [ ! -x "$VENV/bin/python" ] || ! "$VENV/bin/python" -c "import datasketch, numpy" 2>/dev/null; then
    python3 -m venv "$VENV"
    "$VENV/bin/pip" install --quiet datasketch numpy
fi
cargo build --release --quiet
WORK=$(mktemp -d)
trap 'rm -rf "$WORK"' EXIT
# A private copy: the three steps run the same binary even if the target dir is rebuilt meanwhile.
BIN=$WORK/mediflow
cp "${CARGO_TARGET_DIR:-target}/release/mediflow" "$BIN"
"$BIN" bench dedup --records "$N" --export "$WORK/records.jsonl" >/dev/null
"$VENV/bin/python" scripts/dedup_reference.py "$WORK/records.jsonl" "$WORK/reference.json"
"$BIN" bench dedup --records "$N" --reference-results "$WORK/reference.json"
