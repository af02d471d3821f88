"""socketify echo server (uWebSockets through CFFI).

usage: python socketify_echo.py PORT [--deflate]
"""

import sys

from socketify import App, AppListenOptions, CompressOptions


def main() -> None:
    port = int(sys.argv[1])
    deflate = "--deflate" in sys.argv[2:]
    app = App()
    app.ws(
        "/*",
        {
            "compression": CompressOptions.SHARED_COMPRESSOR if deflate else CompressOptions.DISABLED,
            "max_payload_length": 16 * 1024 * 1024,
            "idle_timeout": 0,
            "message": lambda ws, message, opcode: ws.send(message, opcode, deflate),
        },
    )
    app.listen(AppListenOptions(port=port, host="127.0.0.1"), lambda config: print(f"listening {port}", flush=True))
    app.run()


if __name__ == "__main__":
    main()
