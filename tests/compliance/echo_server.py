"""The echo server that Autobahn (kosoku) drives.

``python echo_server.py PORT [COMPRESSION] [CERT KEY]``: COMPRESSION is ``none`` (default),
``shared`` or ``dedicated``; with CERT and KEY it serves wss://. Prints ``listening PORT``
once it accepts connections.
"""

import sys

from uws_py import App, CompressOptions, SSLOptions

COMPRESSION = {
    "none": CompressOptions.DISABLED,
    "shared": CompressOptions.SHARED_COMPRESSOR | CompressOptions.SHARED_DECOMPRESSOR,
    "dedicated": CompressOptions.DEDICATED_COMPRESSOR_256KB | CompressOptions.DEDICATED_DECOMPRESSOR_32KB,
}


def on_message(ws, message, opcode):
    ws.send(message, opcode, True)


def main() -> None:
    mode = sys.argv[2] if len(sys.argv) > 2 else "none"
    ssl = SSLOptions(sys.argv[3], sys.argv[4]) if len(sys.argv) > 4 else None
    app = App(ssl=ssl).ws(
        "/*",
        {
            "message": on_message,
            "compression": COMPRESSION[mode],
            # Compress every echo, however small, so the 12.* and 13.* cases exercise our
            # compressor on each message (kosoku also mishandles uncompressed text messages
            # inside a compressed session; see the closing note of the compression issue).
            "compression_threshold": 0,
            # Autobahn's 9.* cases send messages of up to 16 MiB.
            "max_payload_length": 32 * 1024 * 1024,
            "max_backpressure": 64 * 1024 * 1024,
            "idle_timeout": 60,
        },
    )
    app.listen(int(sys.argv[1]), "127.0.0.1")
    print("listening", app.port, flush=True)
    app.run()


if __name__ == "__main__":
    main()
