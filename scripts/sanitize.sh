#!/usr/bin/env bash
# Runs the C++ unit tests and the Python integration tests with AddressSanitizer and
# UndefinedBehaviorSanitizer.
#
#   scripts/sanitize.sh
#
# 1. The C++ unit tests (cpp/tests/) built into build/sanitize with
#    UWS_PY_SANITIZE=address,undefined, run by ctest with leak checking.
# 2. The extension built with the same sanitizers into its own venv (UWS_ASAN_VENV, default
#    /tmp/uws-asan-venv; the build tree is build/asan/), then tests/integration run twice under
#    it: with Python's own allocator, and with PYTHONMALLOC=malloc so that ASan also sees every
#    Python object. Python is not built with ASan, so the runtime (and libstdc++, see below) is
#    preloaded; leak checking is off for the Python process because CPython leaves memory
#    allocated at exit by design.
#    Sanitizer reports go to build/asan/logs/.
#
# Environment: JOBS (parallel compile jobs, default 1), UWS_ASAN_VENV, PYTEST_ARGS (extra
# pytest arguments, e.g. "-k close"), SANITIZERS (default address,undefined; "address" gets
# past a UBSan finding to what ASan alone reports). Exits non-zero if any step fails.
set -euo pipefail
cd "$(dirname "$0")/.."

jobs="${JOBS:-1}"
venv="${UWS_ASAN_VENV:-/tmp/uws-asan-venv}"
cxx="${CXX:-g++}"
sanitizers="${SANITIZERS:-address,undefined}"
logs="$PWD/build/asan/logs"
results=()
failed=0

record() { # step name, exit status
  if [ "$2" = 0 ]; then
    results+=("ok      $1")
  else
    results+=("FAILED  $1 (exit $2)")
    failed=1
  fi
}

# Prints the sanitizers' reports, if any process wrote one; true when there were some.
print_reports() {
  local report found=1
  for report in "$logs"/*; do
    [ -e "$report" ] || continue
    found=0
    echo "---- $report"
    head -n 60 "$report"
  done
  return "$found"
}

echo "== C++ unit tests with $sanitizers"
status=0
{
  cmake -S . -B build/sanitize -DCMAKE_CXX_COMPILER="$cxx" -DCMAKE_BUILD_TYPE=RelWithDebInfo \
    -DUWS_PY_BUILD_TESTS=ON -DUWS_PY_SANITIZE="$sanitizers" >/dev/null &&
    cmake --build build/sanitize --parallel "$jobs" &&
    ASAN_OPTIONS=detect_leaks=1:abort_on_error=1 UBSAN_OPTIONS=print_stacktrace=1:halt_on_error=1 \
      ctest --test-dir build/sanitize --output-on-failure
} || status=$?
record "C++ unit tests with $sanitizers, leak checking" "$status"

echo "== Python extension with $sanitizers into $venv"
status=0
{
  [ -x "$venv/bin/python" ] || python3 -m venv "$venv"
  # Uninstalled first so that this build, not an earlier one, is what gets tested; the test
  # extra brings what tests/integration imports.
  "$venv/bin/pip" uninstall -q -y uws-py 2>/dev/null || true
  CMAKE_BUILD_PARALLEL_LEVEL="$jobs" "$venv/bin/pip" install -q \
    --config-settings=cmake.define.UWS_PY_SANITIZE="$sanitizers" \
    --config-settings=cmake.build-type=RelWithDebInfo \
    --config-settings=build-dir="build/asan/{wheel_tag}" \
    ".[test]"
} || status=$?
record "build of the sanitized extension" "$status"

if [ "$status" = 0 ]; then
  # Found without importing it: loading it needs the preloaded runtime.
  platlib=$("$venv/bin/python" -c 'import sysconfig; print(sysconfig.get_paths()["platlib"])')
  extension=$(ls "$platlib"/uws_py/_core*.so)
  echo "extension: $extension"
  if [[ "$(readelf -d "$extension")" != *libasan* ]]; then
    echo "sanitize.sh: $extension is not linked against libasan" >&2
    record "sanitized extension check" 1
  fi
  # The extension is built with $cxx, so its ASan runtime is the one to preload. libstdc++
  # goes with it: python does not link it, and ASan resolves the real __cxa_throw when it
  # starts, so without it the first C++ exception (pybind11 turns every error raised to
  # Python into one) dies in ASan's interceptor with "CHECK failed: ... real___cxa_throw".
  preload="$("$cxx" -print-file-name=libasan.so) $("$cxx" -print-file-name=libstdc++.so)"
  for allocator in pymalloc malloc; do
    echo "== tests/integration with $sanitizers, Python allocator: $allocator"
    rm -rf "$logs" && mkdir -p "$logs"
    status=0
    (
      export LD_PRELOAD="$preload"
      export ASAN_OPTIONS="detect_leaks=0:abort_on_error=1:log_path=$logs/asan"
      export UBSAN_OPTIONS="print_stacktrace=1:halt_on_error=1:abort_on_error=1:log_path=$logs/ubsan"
      if [ "$allocator" = malloc ]; then export PYTHONMALLOC=malloc; fi
      # shellcheck disable=SC2086 # PYTEST_ARGS is a list of arguments
      # --capture=sys: a sanitizer report written to fd 2 reaches the terminal even when it
      # kills the process before pytest could show what it captured.
      "$venv/bin/python" -m pytest -q -p no:cacheprovider --capture=sys tests/integration ${PYTEST_ARGS:-}
    ) || status=$?
    if print_reports; then
      echo "sanitize.sh: sanitizer reports above" >&2
      [ "$status" != 0 ] || status=1
    fi
    record "tests/integration with $sanitizers, Python allocator $allocator" "$status"
  done
fi

echo
echo "== summary"
printf '%s\n' "${results[@]}"
exit "$failed"
