#!/usr/bin/env bash
# Build llama.cpp's `llama-bench` and `llama-server` (CPU) from the llama.cpp sources that
# the PyPI sdist of llama-cpp-python vendors, for side-by-side benchmarks. The build is
# cached under $MEDIFLOW_CACHE (default ~/.cache/mediflow)/llama.cpp; the last line printed
# is the bin directory. Nothing here is committed or shipped.
set -euo pipefail
VERSION="${LLAMA_CPP_PYTHON_VERSION:-0.3.36}"
CACHE="${MEDIFLOW_CACHE:-$HOME/.cache/mediflow}/llama.cpp-$VERSION"
BIN="$CACHE/build/bin"
if [ -x "$BIN/llama-bench" ] && [ -x "$BIN/llama-server" ]; then
  echo "$BIN"
  exit 0
fi
mkdir -p "$CACHE"
if [ ! -d "$CACHE/src" ]; then
  python3 -m pip download --quiet --no-deps --no-binary llama-cpp-python "llama-cpp-python==$VERSION" -d "$CACHE/sdist" >&2
  mkdir -p "$CACHE/src"
  tar xzf "$CACHE"/sdist/llama_cpp_python-"$VERSION".tar.gz -C "$CACHE/src" --strip-components=1
fi
if ! command -v cmake >/dev/null; then
  python3 -m pip install --quiet --target "$CACHE/tools" cmake >&2
  export PATH="$CACHE/tools/bin:$PATH"
  export PYTHONPATH="$CACHE/tools${PYTHONPATH:+:$PYTHONPATH}"
fi
cmake -S "$CACHE/src/vendor/llama.cpp" -B "$CACHE/build" -DCMAKE_BUILD_TYPE=Release \
  -DLLAMA_CURL=OFF -DLLAMA_BUILD_TESTS=OFF -DLLAMA_BUILD_EXAMPLES=OFF -DLLAMA_BUILD_SERVER=ON >&2
cmake --build "$CACHE/build" --target llama-bench llama-server -j "$(nproc)" >&2
echo "$BIN"
