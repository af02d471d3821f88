"""picows pub/sub server on uvloop: "sub:TOPIC" subscribes, anything else goes to every
transport subscribed to "bench" (picows has no topics; a set per topic is its idiom).

usage: python picows_pubsub.py PORT
"""

import asyncio
import sys
from collections import defaultdict

import uvloop
from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_create_server

topics: dict[str, set] = defaultdict(set)


class PubSub(WSListener):
    def __init__(self) -> None:
        self.joined: list[str] = []

    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        kind = frame.msg_type
        if kind == WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code(), frame.get_close_message())
            transport.disconnect()
            return
        if kind == WSMsgType.TEXT:
            text = frame.get_payload_as_utf8_text()
            if text.startswith("sub:"):
                topics[text[4:]].add(transport)
                self.joined.append(text[4:])
                return
        if kind in (WSMsgType.TEXT, WSMsgType.BINARY):
            payload = frame.get_payload_as_bytes()
            for peer in topics["bench"]:
                if peer is not transport:
                    peer.send(kind, payload)

    def on_ws_disconnected(self, transport: WSTransport) -> None:
        for topic in self.joined:
            topics[topic].discard(transport)


async def main() -> None:
    port = int(sys.argv[1])
    server = await ws_create_server(lambda request: PubSub(), "127.0.0.1", port, max_frame_size=16 * 1024 * 1024)
    print(f"listening {port}", flush=True)
    await server.serve_forever()


if __name__ == "__main__":
    uvloop.run(main())
