#!/usr/bin/env bash
# Builds flashsql with candle's CUDA backend (`--features cuda`) on a machine that has neither
# a GPU nor a CUDA toolkit, and packs a stripped, xz-compressed binary to carry to a GPU
# machine (CUDA 13, driver ≥ 580, compute capability 9.0 by default).
#
#   scripts/build-gpu.sh            # → target/gpu/flashsql-cuda.xz
#
# The toolkit comes from NVIDIA's wheels on PyPI (nvcc, headers, runtime, cuBLAS, cuRAND,
# NVRTC), unpacked once under target/gpu/toolkit. candle links libcuda at build time; where
# no driver is installed a stub library with the driver's symbols stands in for it (the real
# one is found at run time on the GPU machine). Such a binary does not start without CUDA:
# it is a separate build, never the default or the CI one.
#
# Environment: PYTHON (default python3), CUDA_COMPUTE_CAP (default 90), CARGO_TARGET_DIR.
set -euo pipefail

ROOT=$(cd "$(dirname "$0")/.." && pwd)
OUT="$ROOT/target/gpu"
TOOLKIT="$OUT/toolkit"
PYTHON=${PYTHON:-python3}
CUDA_VERSION_PIN=13.0

if [ ! -x "$TOOLKIT/bin/nvcc" ]; then
  echo "fetching the CUDA $CUDA_VERSION_PIN toolkit wheels from PyPI" >&2
  rm -rf "$OUT/wheels" "$OUT/unpacked" "$TOOLKIT"
  mkdir -p "$OUT/wheels" "$OUT/unpacked" "$TOOLKIT"/{bin,include,lib}
  "$PYTHON" -m pip download --quiet --no-deps --only-binary=:all: -d "$OUT/wheels" \
    "nvidia-cuda-nvcc~=$CUDA_VERSION_PIN.0" "nvidia-cuda-crt~=$CUDA_VERSION_PIN.0" \
    "nvidia-nvvm~=$CUDA_VERSION_PIN.0" "nvidia-cuda-runtime~=$CUDA_VERSION_PIN.0" \
    "nvidia-cuda-cccl~=$CUDA_VERSION_PIN.0" "nvidia-cublas~=13.0.0" \
    "nvidia-cuda-nvrtc~=$CUDA_VERSION_PIN.0" "nvidia-curand~=10.4.0"
  for w in "$OUT"/wheels/*.whl; do
    "$PYTHON" -m zipfile -e "$w" "$OUT/unpacked"
  done
  # The wheels share one tree: nvidia/cu13/{bin,include,lib,nvvm}.
  cp -a "$OUT"/unpacked/nvidia/cu13/. "$TOOLKIT"/
  rm -rf "$OUT/wheels" "$OUT/unpacked"
  chmod +x "$TOOLKIT"/bin/* "$TOOLKIT"/nvvm/bin/* 2>/dev/null || true
  # Unversioned names for the linker.
  for lib in "$TOOLKIT"/lib/lib*.so.*; do
    base=$(basename "$lib"); plain="${base%%.so.*}.so"
    [ -e "$TOOLKIT/lib/$plain" ] || ln -s "$base" "$TOOLKIT/lib/$plain"
  done
fi

if [ ! -e "$TOOLKIT/lib/stubs/libcuda.so" ]; then
  # A stub libcuda with every driver entry point cudarc declares.
  cargo fetch --manifest-path "$ROOT/Cargo.toml" --quiet
  CUDARC=$(ls -d "${CARGO_HOME:-$HOME/.cargo}"/registry/src/*/cudarc-0.19.* | sort -V | tail -1)
  mkdir -p "$TOOLKIT/lib/stubs"
  grep -ohE '\bcu[A-Z][A-Za-z0-9_]*\s*\(' "$CUDARC/src/driver/sys/mod.rs" | tr -d '( ' | sort -u \
    | sed 's/.*/int &(void) { return 999; }/' > "$TOOLKIT/lib/stubs/libcuda_stub.c"
  # The driver's soname, so the binary asks for libcuda.so.1 as installed by every driver.
  cc -shared -fPIC -Wl,-soname,libcuda.so.1 -o "$TOOLKIT/lib/stubs/libcuda.so" \
    "$TOOLKIT/lib/stubs/libcuda_stub.c"
  ln -sf libcuda.so "$TOOLKIT/lib/stubs/libcuda.so.1"
fi

export PATH="$TOOLKIT/bin:$PATH"
export CUDA_ROOT="$TOOLKIT" CUDA_PATH="$TOOLKIT" CUDA_TOOLKIT_ROOT_DIR="$TOOLKIT"
export NVCC_PREPEND_FLAGS="-I$TOOLKIT/include"
export LIBRARY_PATH="$TOOLKIT/lib:$TOOLKIT/lib/stubs${LIBRARY_PATH:+:$LIBRARY_PATH}"
export CUDA_COMPUTE_CAP=${CUDA_COMPUTE_CAP:-90}
export CUDARC_CUDA_VERSION=13000
TARGET_DIR=${CARGO_TARGET_DIR:-$ROOT/target}

cargo build --manifest-path "$ROOT/Cargo.toml" --release --features cuda --bin flashsql \
  --target-dir "$TARGET_DIR/cuda"
cp "$TARGET_DIR/cuda/release/flashsql" "$OUT/flashsql-cuda"
strip "$OUT/flashsql-cuda"
xz -T2 -6 -f -k "$OUT/flashsql-cuda"
ls -l "$OUT/flashsql-cuda" "$OUT/flashsql-cuda.xz"
echo "libraries the binary needs where it runs (driver, CUDA 13 runtime, cuBLAS, cuRAND):" >&2
readelf -d "$OUT/flashsql-cuda" | grep -E 'NEEDED.*(cuda|cublas|curand)' >&2 || true
echo "carry $OUT/flashsql-cuda.xz to the GPU machine: xz -d flashsql-cuda.xz && ./flashsql-cuda serve --device cuda" >&2
