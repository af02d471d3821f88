#!/usr/bin/env bash
# Builds the load generator into bench/.build/loadgen (never part of the wheel).
set -euo pipefail
bench=$(cd "$(dirname "$0")" && pwd)
mkdir -p "$bench/.build"
g++ -std=c++17 -O2 -Wall -Wextra -o "$bench/.build/loadgen" "$bench/loadgen/loadgen.cpp" -lz
g++ -std=c++17 -O2 -Wall -Wextra -o "$bench/.build/storm" "$bench/loadgen/storm.cpp"
echo "built $bench/.build/loadgen and $bench/.build/storm"
