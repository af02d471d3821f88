#!/usr/bin/env bash
# Builds the load generator into bench/.build/loadgen (never part of the wheel), or into the
# path given as the first argument (the tests build their own copy), and the connection-storm
# generator bench/loadgen/storm.cpp beside it (storm).
set -euo pipefail
bench=$(cd "$(dirname "$0")" && pwd)
out=${1:-$bench/.build/loadgen}
mkdir -p "$(dirname "$out")"
g++ -std=c++17 -O2 -Wall -Wextra -pthread -o "$out" "$bench/loadgen/loadgen.cpp" -lz
g++ -std=c++17 -O2 -Wall -Wextra -o "$(dirname "$out")/storm" "$bench/loadgen/storm.cpp"
echo "built $out and $(dirname "$out")/storm"
