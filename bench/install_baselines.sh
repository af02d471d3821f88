#!/usr/bin/env bash
# Installs the baseline servers' libraries into bench/.baselines/ (a folder this script owns):
#   .baselines/venv   Python websockets, socketify, picows, aiohttp (+ matplotlib for the chart),
#                     on the same interpreter as the project's .venv; uws_py is not needed there.
#   .baselines/node   Node ws and two uWebSockets.js builds (see README: "uWebSockets.js on glibc 2.36").
# Re-running is safe; every step is idempotent. Set PYTHON to pick another base interpreter.
set -euo pipefail

bench=$(cd "$(dirname "$0")" && pwd)
dest="$bench/.baselines"
python="${PYTHON:-$bench/../.venv/bin/python}"
mkdir -p "$dest/node"

echo "== Python baselines into $dest/venv"
if [ ! -x "$dest/venv/bin/python" ]; then
    "$python" -m venv "$dest/venv"
fi
"$dest/venv/bin/pip" install --quiet --upgrade pip
"$dest/venv/bin/pip" install --quiet websockets socketify picows uvloop aiohttp matplotlib

echo "== Node baselines into $dest/node"
cd "$dest/node"
[ -f package.json ] || echo '{"name": "uws-py-bench-baselines", "private": true}' > package.json
npm install --no-audit --no-fund --silent \
    ws bufferutil \
    "@trufflesuite/uws-js-unofficial@20.30.0-unofficial.0" \
    "@btc-vision/uwebsockets.js"

echo "== glibc 2.36 shim for the newest uWebSockets.js build"
bash "$bench/compat/make_uwsjs_loadable.sh" "$dest" || echo "warning: newest uWebSockets.js stays unloadable; the trufflesuite build is used"

echo "== installed versions"
"$dest/venv/bin/python" - <<'PY'
from importlib.metadata import version
for name in ("websockets", "socketify", "picows", "uvloop", "aiohttp", "matplotlib"):
    print(f"  {name} {version(name)}")
PY
node -e 'const fs = require("fs"); for (const n of ["ws", "bufferutil", "@trufflesuite/uws-js-unofficial", "@btc-vision/uwebsockets.js"]) console.log("  " + n + " " + JSON.parse(fs.readFileSync("node_modules/" + n + "/package.json")).version)'
