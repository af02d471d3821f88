"""Failing a WebSocket connection: the close codes a server must send, and the check that it did."""

from __future__ import annotations

from .wsclient import connect

PROTOCOL_ERROR = 1002
INVALID_DATA = 1007
TOO_BIG = 1009



def assert_connection_failed(server, recorder, data: bytes, expected_code: int) -> None:
    """Sends data on a fresh connection; the server must answer with a close frame carrying
    expected_code, close TCP, and run the close handler, without the message handler seeing
    anything."""
    with connect(*server.address) as client:
        recorder.next_open()
        # The server may fail the connection before reading everything sent.
        client.send_raw(data, tolerate_reset=True)
        code, _ = client.expect_close()
        assert code == expected_code
        assert client.wait_for_eof(3.0), "TCP connection left open after failing the WebSocket"
    recorder.next_close()
    assert recorder.messages.empty(), f"message handler saw {recorder.messages.get()!r}"
