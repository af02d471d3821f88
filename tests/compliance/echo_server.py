"""The echo server that Autobahn (kosoku) drives: ``python echo_server.py PORT``.

Prints ``listening PORT`` once it accepts connections.
"""

import sys

from uws_py import App


def on_message(ws, message, opcode):
    ws.send(message, opcode)


def main() -> None:
    app = App().ws(
        "/*",
        {
            "message": on_message,
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
