"""socketify pub/sub server: "sub:TOPIC" subscribes, anything else is published to "bench".

usage: python socketify_pubsub.py PORT
"""

import sys

from socketify import App, AppListenOptions, CompressOptions, OpCode


def main() -> None:
    port = int(sys.argv[1])
    app = App()

    def message(ws, data, opcode):
        if opcode == OpCode.TEXT and data.startswith("sub:"):
            ws.subscribe(data[4:])
        else:
            app.publish("bench", data, opcode)

    app.ws(
        "/*",
        {
            "compression": CompressOptions.DISABLED,
            "max_payload_length": 16 * 1024 * 1024,
            "idle_timeout": 0,
            # uws-py's default; below it a slow subscriber loses publishes (uWS defaults to 64 KiB).
            "max_backpressure": 1024 * 1024,
            "message": message,
        },
    )
    app.listen(AppListenOptions(port=port, host="127.0.0.1"), lambda config: print(f"listening {port}", flush=True))
    app.run()


if __name__ == "__main__":
    main()
