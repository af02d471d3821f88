"""picows echo server on uvloop, as picows recommends for speed. picows has no
permessage-deflate, so --deflate exits with status 3 ("unavailable").

usage: python picows_echo.py PORT
"""

import asyncio
import sys

import uvloop
from picows import WSFrame, WSListener, WSMsgType, WSTransport, ws_create_server


class Echo(WSListener):
    def on_ws_frame(self, transport: WSTransport, frame: WSFrame) -> None:
        if frame.msg_type == WSMsgType.CLOSE:
            transport.send_close(frame.get_close_code(), frame.get_close_message())
            transport.disconnect()
        elif frame.msg_type in (WSMsgType.TEXT, WSMsgType.BINARY, WSMsgType.CONTINUATION):
            transport.send(frame.msg_type, frame.get_payload_as_memoryview(), frame.fin)


async def main() -> None:
    if "--deflate" in sys.argv[2:]:
        print("unavailable: picows does not implement permessage-deflate", flush=True)
        sys.exit(3)
    port = int(sys.argv[1])
    server = await ws_create_server(lambda request: Echo(), "127.0.0.1", port, max_frame_size=16 * 1024 * 1024)
    print(f"listening {port}", flush=True)
    await server.serve_forever()


if __name__ == "__main__":
    uvloop.run(main())
