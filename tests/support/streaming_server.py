"""A server process for the response-backpressure test: GET /big streams TOTAL bytes of a
deterministic body, with try_end (Content-Length) or write (chunked), pausing whenever the
client is slower and going on from on_writable. Prints its port, then serves until killed.

    python -m tests.support.streaming_server try_end|write TOTAL
"""

from __future__ import annotations

import random
import sys

from uws_py import App

# A prime block length, so that the body does not repeat in step with any chunk size.
BLOCK = 1_000_003
CHUNK = 256 * 1024
_BLOCK = random.Random(12).randbytes(BLOCK)
_TWICE = memoryview(_BLOCK * 2)


def piece(offset: int, length: int) -> memoryview:
    """Bytes [offset, offset + length) of the body (length <= BLOCK), without a copy."""
    start = offset % BLOCK
    return _TWICE[start:start + length]


def body_chunks(total: int):
    """The whole body, in CHUNK pieces: what a client checks what it received against."""
    for offset in range(0, total, CHUNK):
        yield piece(offset, min(CHUNK, total - offset))


def stream_with_try_end(total: int):
    def handler(res, req):
        def pump(offset: int) -> bool:
            while True:
                ok, done = res.try_end(piece(offset, min(CHUNK, total - offset)), total)
                if done:
                    return True
                if not ok:
                    return False  # the kernel is full: on_writable comes back with the offset
                offset = res.get_write_offset()

        res.on_aborted(lambda: None)
        res.on_writable(pump)
        pump(0)

    return handler


def stream_with_write(total: int):
    def handler(res, req):
        def pump(offset: int) -> bool:
            while offset < total:
                chunk = piece(offset, min(CHUNK, total - offset))
                offset += len(chunk)
                if offset == total:
                    res.end(chunk)
                    return True
                if not res.write(chunk):
                    return False  # queued, but the client is behind: wait for on_writable
            return True

        res.on_aborted(lambda: None)
        res.on_writable(pump)
        pump(0)

    return handler


def main() -> None:
    mode, total = sys.argv[1], int(sys.argv[2])
    handler = {"try_end": stream_with_try_end, "write": stream_with_write}[mode](total)
    app = App()
    app.get("/big", handler).listen(0)
    print(app.port, flush=True)
    app.run()


if __name__ == "__main__":
    main()
