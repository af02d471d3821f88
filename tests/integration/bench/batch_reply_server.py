"""A raw App that answers the load generator's BATCH of 4 PINGs (--payload batch) with the
BATCH reply RealtimeServer sends, right or wrong in one place, for the --reply batch check.

usage: python batch_reply_server.py PORT right|item-id|frame-id|no-time|extra-byte
(prints `listening PORT`)
"""

import sys
import time

import orjson

from uws_py import App, OpCode


def reply(request: bytes, how: str) -> bytes:
    message = orjson.loads(request)
    now = b"" if how == "no-time" else b"%d" % int(time.time() * 1000)
    pongs = []
    for item in message["messages"]:
        item_id = item["id"] + (1 if how == "item-id" and item["id"] == 4 else 0)
        pongs.append(b'{"type":"PONG","serverTime":%s,"id":%d}' % (now, item_id))
    frame_id = message["id"] + (1 if how == "frame-id" else 0)
    text = b'{"type":"BATCH","timestamp":%s,"messages":[%s],"id":%d}' % (now, b",".join(pongs), frame_id)
    return text + (b" " if how == "extra-byte" else b"")


def main() -> None:
    port, how = int(sys.argv[1]), sys.argv[2]

    def message(ws, data, opcode):
        ws.send(reply(data, how), OpCode.TEXT)

    app = App().ws("/*", {"message": message, "idle_timeout": 0})
    app.listen(port)
    print(f"listening {app.port}", flush=True)
    app.run()


if __name__ == "__main__":
    main()
