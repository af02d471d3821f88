"""uws-py raw App speaking the realtime fan-out protocol, for scenario 10's reference: the
same wire bytes as RealtimeServer (SUBSCRIBE -> SUBSCRIBED; PUBLISH -> a MESSAGE with
"from" to every subscriber of the topic), with a few lines of Python and ``app.publish``
doing the fan-out, and none of the realtime layer (no auth, rate limit, metrics, routing).

usage: python uwspy_app_fanout.py PORT   (bench/.build/loadgen --mode fanout --topic bench)
Prints `listening PORT`.
"""

import itertools
import sys

import orjson

from uws_py import App, OpCode


def main() -> None:
    port = int(sys.argv[1])
    app = App()
    ids = itertools.count(1)

    def upgrade(res, req, context):
        # The connection's id (the MESSAGE's "from") is its user data.
        res.upgrade(f"{next(ids):016x}", req.get_header("sec-websocket-key"), req.get_header("sec-websocket-protocol"),
                    req.get_header("sec-websocket-extensions"), context)

    def message(ws, data, opcode):
        request = orjson.loads(data)
        kind = request.get("type")
        if kind == "SUBSCRIBE":
            ws.subscribe(request["topic"])
            ws.send(orjson.dumps({"type": "SUBSCRIBED", "topic": request["topic"]}), OpCode.TEXT)
        elif kind == "PUBLISH":
            topic = request["topic"]
            payload = {"type": "MESSAGE", "topic": topic, "data": request.get("data"), "from": ws.get_user_data()}
            app.publish(topic, orjson.dumps(payload), OpCode.TEXT)

    app.ws("/*", {"upgrade": upgrade, "message": message, "idle_timeout": 0})
    app.listen(port)
    print(f"listening {app.port}", flush=True)
    app.run()


if __name__ == "__main__":
    main()
