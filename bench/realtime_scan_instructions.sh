#!/usr/bin/env bash
# Instructions of uws::scanRealtimeMessage per message and per byte, by callgrind, for the
# messages of bench/realtime_instructions.py (the scanner alone, built as the extension is:
# -O3 -DNDEBUG).
#
#   bench/realtime_scan_instructions.sh [KIND ...]   (default: ping publish-none subscribe batch echo)
set -euo pipefail
cd "$(dirname "$0")/.."
kinds=("$@")
[ "${#kinds[@]}" -gt 0 ] || kinds=(ping publish-none subscribe batch echo)
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
"${CXX:-c++}" -std=c++17 -O3 -DNDEBUG -Icpp/include cpp/src/RealtimeScan.cpp bench/realtime_scan_instructions.cpp \
  -o "$work/scan"
count=1000
for kind in "${kinds[@]}"; do
  line=$(valgrind --tool=callgrind --toggle-collect='uws::scanRealtimeMessage*' \
    --callgrind-out-file="$work/out" "$work/scan" "$kind" "$count" 2>/dev/null)
  bytes=$(sed -nE 's/.*bytes=([0-9]+).*/\1/p' <<<"$line")
  total=$(sed -nE 's/^summary: *([0-9]+).*/\1/p' "$work/out")
  awk -v k="$kind" -v t="$total" -v c="$count" -v b="$bytes" \
    'BEGIN { printf "%-13s %4d bytes  %7.1f instructions/message  %5.2f /byte\n", k, b, t / c, t / c / b }'
done
