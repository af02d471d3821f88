"""uws-py echo server: a raw App whose Python message handler sends every message back.

usage: python uwspy_echo.py PORT [--deflate]
"""

import sys

from uws_py import App, CompressOptions


def main() -> None:
    port = int(sys.argv[1])
    compression = CompressOptions.DISABLED
    deflate = "--deflate" in sys.argv[2:]
    if deflate:
        compression = CompressOptions.SHARED_COMPRESSOR | CompressOptions.SHARED_DECOMPRESSOR

    def message(ws, data, opcode):
        ws.send(data, opcode, deflate)

    app = App().ws("/*", {"message": message, "compression": compression, "idle_timeout": 0})
    app.listen(port)
    print(f"listening {app.port}", flush=True)
    app.run()


if __name__ == "__main__":
    main()
