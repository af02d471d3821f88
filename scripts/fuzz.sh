#!/usr/bin/env bash
# Builds the libFuzzer targets (cpp/fuzz/) with ASan and UBSan into build/fuzz and runs each for
# SECONDS_PER_TARGET seconds (default 60), one process at a time.
#
#   scripts/fuzz.sh [SECONDS_PER_TARGET]
#
# Each target starts from its committed seeds (cpp/fuzz/corpus/<target>/) copied into
# build/fuzz/corpus/<target>/, which keeps what earlier runs found. A crash, leak, timeout
# (-timeout=5) or running out of memory (-rss_limit_mb=1024) fails the script; the input is
# saved in build/fuzz/artifacts/<target>/ and the report is in build/fuzz/logs/<target>.log.
# Reproduce one with: build/fuzz/<target> <artifact file>
set -euo pipefail
cd "$(dirname "$0")/.."

seconds="${1:-60}"
targets=(fuzz_http_parser fuzz_frame_parser fuzz_inflate fuzz_topic_tree fuzz_proxy_header fuzz_realtime_scan)
build=build/fuzz

# libFuzzer comes with clang's runtime (libclang-rt-14-dev on Debian 12).
if ! command -v clang++ >/dev/null 2>&1; then
  if command -v apt-get >/dev/null 2>&1 && [ "$(id -u)" = 0 ]; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq clang libclang-rt-14-dev zlib1g-dev cmake
  else
    echo "fuzz.sh: clang++ is missing; install clang and libclang-rt-14-dev (or your distribution's libFuzzer)" >&2
    exit 2
  fi
fi

# A configured build keeps its generator; a new one uses Ninja when there is one.
generator=()
if [ ! -f "$build/CMakeCache.txt" ] && command -v ninja >/dev/null 2>&1; then
  generator=(-G Ninja)
fi
cmake -S . -B "$build" "${generator[@]}" \
  -DCMAKE_CXX_COMPILER=clang++ \
  -DCMAKE_BUILD_TYPE=RelWithDebInfo \
  -DUWS_PY_BUILD_FUZZERS=ON \
  -DUWS_PY_SANITIZE=address,undefined >/dev/null
cmake --build "$build" --parallel 1 --target "${targets[@]}"

export ASAN_OPTIONS="${ASAN_OPTIONS:-detect_leaks=1:abort_on_error=1:symbolize=1}"
export UBSAN_OPTIONS="${UBSAN_OPTIONS:-print_stacktrace=1:halt_on_error=1}"

failed=()
summary=()
for target in "${targets[@]}"; do
  corpus="$build/corpus/$target"
  artifacts="$build/artifacts/$target"
  log="$build/logs/$target.log"
  mkdir -p "$corpus" "$artifacts" "$(dirname "$log")"
  for seed in cpp/fuzz/corpus/"$target"/*; do
    [ -e "$corpus/$(basename "$seed")" ] || cp "$seed" "$corpus/"
  done

  echo "== $target: ${seconds}s"
  status=0
  "$build/$target" "$corpus" \
    -dict="cpp/fuzz/$target.dict" \
    -max_total_time="$seconds" \
    -timeout=5 \
    -rss_limit_mb=1024 \
    -detect_leaks=1 \
    -print_final_stats=1 \
    -artifact_prefix="$artifacts/" \
    >"$log" 2>&1 || status=$?

  # The last status line ("#N DONE cov: .. ft: .." or the last one before a crash).
  last=$(grep -E '^#[0-9]+' "$log" | tail -n 1 || true)
  execs=$(sed -nE 's/^stat::number_of_executed_units: *([0-9]+)/\1/p' "$log" | tail -n 1)
  [ -n "$execs" ] || execs=$(sed -nE 's/^#([0-9]+).*/\1/p' <<<"$last")
  cov=$(sed -nE 's/.* cov: ([0-9]+).*/\1/p' <<<"$last")
  ft=$(sed -nE 's/.* ft: ([0-9]+).*/\1/p' <<<"$last")
  corp=$(sed -nE 's/.* corp: ([^ ]+).*/\1/p' <<<"$last")
  if [ "$status" = 0 ]; then
    result=ok
  else
    result="FAILED (exit $status)"
    failed+=("$target")
    grep -E 'ERROR: (AddressSanitizer|LeakSanitizer|libFuzzer)|runtime error:|invariant broken|SUMMARY:|Test unit written to' "$log" \
      | head -n 20 | sed 's/^/    /' || true
    echo "    full report: $log"
  fi
  summary+=("$(printf '%-18s %-10s execs=%-10s cov=%-6s ft=%-6s corpus=%s' "$target" "$result" "${execs:-?}" "${cov:-?}" "${ft:-?}" "${corp:-?}")")
done

echo
echo "== summary (${seconds}s per target)"
printf '%s\n' "${summary[@]}"
if [ "${#failed[@]}" -gt 0 ]; then
  echo "fuzz.sh: failures in: ${failed[*]}" >&2
  exit 1
fi
