#!/usr/bin/env bash
# Makes @btc-vision/uwebsockets.js (Node 20 build, linked against glibc 2.38) load on glibc 2.36:
# a copy of its .node with the GLIBC_2.38 requirement marked weak, plus a preloaded shim that
# defines the three __isoc23_* functions it needs. Writes DEST/uwsjs-glibc236/{uws.node,libisoc23.so};
# the uwsjs servers load them when started with UWSJS_NATIVE and LD_PRELOAD (bench/run.py does).
set -euo pipefail
compat=$(cd "$(dirname "$0")" && pwd)
dest="$1"
package="$dest/node/node_modules/@btc-vision/uwebsockets.js"
abi=$(node -p process.versions.modules)
native="$package/uws_linux_x64_${abi}.node"
[ -f "$native" ] || { echo "no $native"; exit 1; }
out="$dest/uwsjs-glibc236"
mkdir -p "$out"
python3 "$compat/weaken_glibc_versions.py" "$native" "$out/uws.node" GLIBC_2.38
gcc -O2 -shared -fPIC -o "$out/libisoc23.so" "$compat/isoc23_shim.c"
LD_PRELOAD="$out/libisoc23.so" node -e "const u = require('$out/uws.node'); if (typeof u.App !== 'function') process.exit(1)"
echo "newest uWebSockets.js loads through $out"
