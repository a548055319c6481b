#!/usr/bin/env bash
# SPDX-License-Identifier: Apache-2.0
# The README's quick start: install what is missing (Debian 12, as root), build with Ninja, then
#   demo  run the main demo (06_server under a bounded load)
#   test  run the whole test suite
#   bench run the benchmark report (medians and ratios to their baselines)
# HL_BUILD_DIR overrides the build directory; HL_CMAKE_ARGS adds configure options (CI passes
# -DCMAKE_COMPILE_WARNING_AS_ERROR=ON); HL_EXTRA_PACKAGES adds Debian packages to install (CI: clang
# and libFuzzer for its sanitizer and fuzz stages).
set -euo pipefail

mode=${1:-demo}
top=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
build=${HL_BUILD_DIR:-$top/build}

# gdb: the crash-dump tests read the core files with it (they skip without it). duktape-dev: the
# JavaScript guest is compiled from its source.
packages=(cmake ninja-build g++ pkg-config flatbuffers-compiler flatbuffers-compiler-dev libflatbuffers-dev
          libgtest-dev libbenchmark-dev libcapstone-dev libasio-dev liburing-dev libcli11-dev libhttp-parser-dev
          musl-dev musl-tools gdb duktape-dev)
# shellcheck disable=SC2206 # HL_EXTRA_PACKAGES is a list of names
packages+=(${HL_EXTRA_PACKAGES:-})
missing=()
for p in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q "install ok installed" || missing+=("$p")
done
if ((${#missing[@]})); then
  echo "== installing: ${missing[*]}"
  if [[ $(id -u) -ne 0 ]]; then
    echo "error: packages are missing and this is not root; run: sudo apt-get install ${missing[*]}" >&2
    exit 1
  fi
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${missing[@]}"
fi

echo "== configuring and building in $build"
# shellcheck disable=SC2086 # HL_CMAKE_ARGS is a list of options
cmake -S "$top" -B "$build" -G Ninja -DCMAKE_BUILD_TYPE=RelWithDebInfo ${HL_CMAKE_ARGS:-} >/dev/null
cmake --build "$build" --parallel "$(nproc)"

case "$mode" in
  demo)
    exec "$build/examples/06_server/06_server"
    ;;
  test)
    cd "$build"
    log=$(mktemp)
    status=0
    ctest --output-on-failure --timeout 300 -j "$(nproc)" 2>&1 | tee "$log" || status=$?
    skipped=$(grep -c '(Skipped)' "$log" || true)
    if ((skipped > 0)); then
      echo "== skipped: $skipped test(s); each says why (usually: no usable /dev/kvm). This run is not green."
    else
      echo "== skipped: 0 tests"
    fi
    rm -f "$log"
    exit "$status"
    ;;
  bench)
    cd "$build"
    exec "$build/benchmarks/report"
    ;;
  *)
    echo "usage: $0 [demo|test|bench]" >&2
    exit 2
    ;;
esac
