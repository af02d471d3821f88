"""Copies an ELF shared object, marking chosen glibc version requirements weak.

The dynamic loader refuses a library whose ``.gnu.version_r`` names a glibc version the system
lacks (``version `GLIBC_2.38' not found``) unless that requirement carries ``VER_FLG_WEAK``.
With the flag set, loading proceeds, and the few symbols bound to that version must then come
from another object in the global scope: ``isoc23_shim.c``, preloaded.

usage: python weaken_glibc_versions.py IN.so OUT.so GLIBC_2.38 [GLIBC_2.39 ...]
"""

from __future__ import annotations

import struct
import sys

SHT_GNU_VERNEED = 0x6FFFFFFE
VER_FLG_WEAK = 0x2


def _c_string(data: bytes, offset: int) -> str:
    return data[offset : data.index(b"\0", offset)].decode()


def weaken(image: bytearray, versions: set[str]) -> list[str]:
    """Sets VER_FLG_WEAK on every requirement of a version in ``versions``; returns those changed."""
    if image[:4] != b"\x7fELF" or image[4] != 2 or image[5] != 1:
        raise ValueError("not a 64-bit little-endian ELF file")
    shoff, = struct.unpack_from("<Q", image, 0x28)
    shentsize, shnum = struct.unpack_from("<HH", image, 0x3A)
    sections = [struct.unpack_from("<IIQQQQIIQQ", image, shoff + i * shentsize) for i in range(shnum)]
    changed = []
    for _name, kind, _flags, _addr, offset, _size, link, count, _align, _entsize in sections:
        if kind != SHT_GNU_VERNEED:
            continue
        strtab_offset = sections[link][4]
        need = offset
        for _ in range(count):
            _version, aux_count, _file, aux, next_need = struct.unpack_from("<HHIII", image, need)
            entry = need + aux
            for _ in range(aux_count):
                _hash, flags, _other, name, next_aux = struct.unpack_from("<IHHII", image, entry)
                version = _c_string(image, strtab_offset + name)
                if version in versions:
                    struct.pack_into("<H", image, entry + 4, flags | VER_FLG_WEAK)
                    changed.append(version)
                entry += next_aux
            need += next_need
    return changed


def main() -> int:
    if len(sys.argv) < 4:
        print(__doc__, file=sys.stderr)
        return 2
    source, target, *versions = sys.argv[1:]
    with open(source, "rb") as f:
        image = bytearray(f.read())
    changed = weaken(image, set(versions))
    if not changed:
        print(f"{source}: requires none of {versions}; copied unchanged", file=sys.stderr)
    with open(target, "wb") as f:
        f.write(image)
    print(f"{target}: weakened {', '.join(changed) or 'nothing'}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
