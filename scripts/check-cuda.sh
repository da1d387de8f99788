#!/usr/bin/env bash
# Compile the `cuda` feature on a machine with no GPU and no CUDA toolkit: nvcc, the
# CUDA 13 headers and runtime come from NVIDIA's PyPI wheels (installed once into the
# cache), arranged as a CUDA_HOME, then `cargo check --features cuda` (candle-kernels'
# build script compiles its kernels with nvcc; our cuda code paths are type-checked).
# Linking a cuda binary additionally needs the driver's libcuda (a full toolkit ships
# stubs); the GPU machine has it.
set -euo pipefail
cd "$(dirname "$0")/.."
CACHE=${MEDIFLOW_CACHE:-$HOME/.cache/mediflow}
TK=$CACHE/cuda-13.0
SRC=$TK/wheels/nvidia/cu13
if [ ! -x "$SRC/bin/nvcc" ]; then
  python3 -m pip install --quiet --no-deps --disable-pip-version-check --target "$TK/wheels" \
    nvidia-cuda-nvcc==13.0.88 nvidia-cuda-runtime==13.0.88 nvidia-cuda-crt==13.0.88 \
    nvidia-cuda-cccl==13.0.85 nvidia-nvvm==13.0.88
fi
HOME_DIR=$TK/home
mkdir -p "$HOME_DIR/targets/x86_64-linux"
for d in bin include lib nvvm; do ln -sfn "$SRC/$d" "$HOME_DIR/$d"; done
ln -sfn "$SRC/lib" "$HOME_DIR/lib64"
ln -sfn "$SRC/include" "$HOME_DIR/targets/x86_64-linux/include"
ln -sfn "$SRC/lib" "$HOME_DIR/targets/x86_64-linux/lib"
export CUDA_HOME=$HOME_DIR CUDA_PATH=$HOME_DIR CUDA_ROOT=$HOME_DIR
export PATH=$HOME_DIR/bin:$PATH
# sm_90: H100/H200. Set CUDA_COMPUTE_CAP for another GPU.
export CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-90}
nvcc --version | tail -n 2
exec cargo check --features cuda --all-targets "$@"
