"""uws-py pub/sub server: "sub:TOPIC" (text) subscribes; any other message is published to
topic "bench" through the core's topic tree (app.publish).

usage: python uwspy_pubsub.py PORT
Exits with status 3 and "unavailable: ..." when this uws_py has no pub/sub API yet.
"""

import sys

from uws_py import App, OpCode, WebSocket


def main() -> None:
    if not hasattr(WebSocket, "subscribe") or not hasattr(App, "publish"):
        print("unavailable: uws_py has no WebSocket.subscribe/App.publish yet", flush=True)
        sys.exit(3)
    port = int(sys.argv[1])
    app = App()

    def message(ws, data, opcode):
        if opcode == OpCode.TEXT and data.startswith("sub:"):
            ws.subscribe(data[4:])
        else:
            app.publish("bench", data, opcode)

    app.ws("/*", {"message": message, "idle_timeout": 0})
    app.listen(port)
    print(f"listening {app.port}", flush=True)
    app.run()


if __name__ == "__main__":
    main()
