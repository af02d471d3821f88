"""The HTTP side: the upgrade handshake (RFC 6455 section 4) and every way to be refused."""

from __future__ import annotations

import queue

import pytest

from tests.support.harness import wait_for
from tests.support.wsclient import (
    HandshakeRefused,
    Op,
    accept_key,
    connect,
    encode_frame,
    handshake_request,
    new_key,
    open_raw_http,
    raw_http,
    socket_reaches_eof,
)

RFC_SAMPLE_KEY = "dGhlIHNhbXBsZSBub25jZQ=="
RFC_SAMPLE_ACCEPT = "s3pPLMBiTxaQ9kYGzzhZRbK+xOo="


def test_accept_key_helper_matches_rfc_sample():
    assert accept_key(RFC_SAMPLE_KEY) == RFC_SAMPLE_ACCEPT


def test_upgrade_answers_101_with_accept_key(echo_server, recorder):
    response = raw_http(*echo_server.address, handshake_request(key=RFC_SAMPLE_KEY))
    assert response.status == 101
    assert response.headers["sec-websocket-accept"] == RFC_SAMPLE_ACCEPT
    assert response.headers["upgrade"].lower() == "websocket"
    assert "upgrade" in [t.strip().lower() for t in response.headers["connection"].split(",")]
    recorder.next_open()


def test_upgrade_accepts_any_header_case_and_connection_token_list(echo_server, recorder):
    key = new_key()
    request = (
        "GET /chat HTTP/1.1\r\n"
        "host: 127.0.0.1\r\n"
        "upgrade: WebSocket\r\n"
        "connection: keep-alive, Upgrade\r\n"
        f"sec-websocket-key: {key}\r\n"
        "SEC-WEBSOCKET-VERSION: 13\r\n\r\n"
    ).encode()
    response = raw_http(*echo_server.address, request)
    assert response.status == 101
    assert response.headers["sec-websocket-accept"] == accept_key(key)


def test_connect_then_echo(echo_server):
    with connect(*echo_server.address) as client:
        client.send_text("hello")
        assert client.recv_message() == (Op.TEXT, b"hello")


def test_frame_sent_with_the_request_head_is_processed(echo_server):
    with connect(*echo_server.address, first_data=encode_frame(Op.TEXT, b"early")) as client:
        assert client.recv_message() == (Op.TEXT, b"early")


def refused(server, request: bytes):
    """The response to request, after checking the server closed the connection after it."""
    response, sock = open_raw_http(*server.address, request)
    with sock:
        assert socket_reaches_eof(sock, timeout=3.0), (
            f"connection left open after {response.status}"
        )
    return response


def test_unknown_route_gets_404(make_server, recorder):
    server = make_server(recorder.behavior(), route="/chat")
    assert refused(server, handshake_request(path="/elsewhere")).status == 404


def test_known_route_still_upgrades_next_to_404(make_server, recorder):
    server = make_server(recorder.behavior(), route="/chat")
    with connect(*server.address, path="/chat"):
        recorder.next_open()


def test_plain_get_on_websocket_route_gets_426(echo_server):
    request = b"GET / HTTP/1.1\r\nHost: 127.0.0.1\r\n\r\n"
    assert refused(echo_server, request).status == 426


@pytest.mark.parametrize(
    "request_bytes",
    [
        pytest.param(b"GET\r\n\r\n", id="request-line-without-target-and-version"),
        pytest.param(
            handshake_request(headers=[("X-Ok", "1")]).replace(b"X-Ok: 1", b"X-NoColon"),
            id="header-without-colon",
        ),
        pytest.param(
            handshake_request(headers=[("X-Ok", "1")]).replace(b"X-Ok: 1", b"Bad Name: 1"),
            id="space-in-header-name",
        ),
        pytest.param(
            handshake_request(headers=[("X-Ok", "1")]).replace(b"X-Ok: 1", b": no-name"),
            id="empty-header-name",
        ),
    ],
)
def test_malformed_request_gets_400(echo_server, request_bytes):
    assert refused(echo_server, request_bytes).status == 400


def test_head_over_16_kib_in_one_header_gets_431(echo_server):
    request = handshake_request(headers=[("X-Big", "a" * (17 * 1024))])
    assert refused(echo_server, request).status == 431


def test_head_over_16_kib_across_headers_gets_431(echo_server):
    request = handshake_request(headers=[(f"X-Part-{i}", "b" * 400) for i in range(50)])
    assert len(request) > 16 * 1024
    assert refused(echo_server, request).status == 431


def test_more_than_100_headers_gets_431(echo_server):
    request = handshake_request(headers=[(f"X-H{i}", "v") for i in range(110)])
    assert len(request) < 4 * 1024
    assert refused(echo_server, request).status == 431


def test_large_head_under_limits_is_accepted(echo_server, recorder):
    """The limits must not be tighter than documented: 12 KiB in 90 headers still upgrades."""
    headers = [(f"X-H{i}", "c" * 130) for i in range(85)]
    request = handshake_request(headers=headers)
    assert 11 * 1024 < len(request) < 16 * 1024
    assert raw_http(*echo_server.address, request).status == 101


@pytest.mark.parametrize("version", ["8", "12", "14", "abc"])
def test_other_websocket_version_gets_426_naming_13(echo_server, version):
    response = refused(echo_server, handshake_request(version=version))
    assert response.status == 426
    assert response.headers.get("sec-websocket-version") == "13"


def test_missing_websocket_key_gets_400(echo_server):
    assert refused(echo_server, handshake_request(omit=["Sec-WebSocket-Key"])).status == 400


@pytest.mark.parametrize(
    "key",
    [
        pytest.param("", id="empty"),
        pytest.param("not base64 at all!!", id="not-base64"),
        pytest.param("AAAAAAAAAAAAAAAAAAAA", id="15-bytes"),
        pytest.param("AAAAAAAAAAAAAAAAAAAAAAA=", id="17-bytes"),
        pytest.param("!!!!!!!!!!!!!!!!!!!!!!==", id="24-chars-not-base64"),
    ],
)
def test_invalid_websocket_key_gets_400(echo_server, key):
    assert refused(echo_server, handshake_request(key=key)).status == 400


def test_refusal_reaches_no_handler(echo_server, recorder):
    refused(echo_server, handshake_request(version="8"))
    refused(echo_server, handshake_request(omit=["Sec-WebSocket-Key"]))
    assert recorder.opens.empty()


def test_default_upgrade_selects_first_offered_protocol(echo_server):
    with connect(*echo_server.address, protocols=["chat.v2", "chat.v1"]) as client:
        assert client.protocol == "chat.v2"


def test_no_protocol_header_when_none_offered(echo_server):
    with connect(*echo_server.address) as client:
        assert client.protocol is None


def test_upgrade_handler_can_refuse(make_server, recorder):
    def on_upgrade(res, req, context):
        res.write_status("403 Forbidden").end("no")

    server = make_server(recorder.behavior(upgrade=recorder.guard(on_upgrade)))
    response = refused(server, handshake_request())
    assert response.status == 403
    assert response.body == b"no"
    assert recorder.opens.empty()


def test_upgrade_handler_sees_request_and_passes_user_data(make_server, recorder):
    seen: queue.Queue = queue.Queue()
    user_data = {"user": "ada"}

    def on_upgrade(res, req, context):
        seen.put(
            {
                "url": req.get_url(),
                "method": req.get_method(),
                "token": req.get_query("token"),
                "origin": req.get_header("origin"),
            }
        )
        res.upgrade(
            user_data,
            req.get_header("sec-websocket-key"),
            req.get_header("sec-websocket-protocol"),
            req.get_header("sec-websocket-extensions"),
            context,
        )

    server = make_server(recorder.behavior(upgrade=recorder.guard(on_upgrade)))
    with connect(
        *server.address, path="/room/7?token=abc%20def", headers={"Origin": "http://example.test"}
    ):
        request = wait_for(seen, "the upgrade handler")
        ws = recorder.next_open()
        # As in µWebSockets, get_url is the path alone; the query is read with get_query.
        assert request["url"] == "/room/7"
        assert request["method"].upper() == "GET"
        assert request["token"] == "abc def"
        assert request["origin"] == "http://example.test"
        assert server.call(ws.get_user_data) is user_data


def test_upgrade_handler_passing_the_offer_answers_one_protocol(make_server, recorder):
    """A handler may pass the client's whole offer; the 101 must still name at most one."""

    def on_upgrade(res, req, context):
        res.upgrade(
            None,
            req.get_header("sec-websocket-key"),
            req.get_header("sec-websocket-protocol"),
            req.get_header("sec-websocket-extensions"),
            context,
        )

    server = make_server(recorder.behavior(upgrade=recorder.guard(on_upgrade)))
    with connect(*server.address, protocols=["a", "b"]) as client:
        assert client.protocol in (None, "a", "b")
        client.send_text("still works")
        assert client.recv_message().payload == b"still works"


def test_refused_handshake_raises_in_client(make_server, recorder):
    server = make_server(recorder.behavior(), route="/chat")
    with pytest.raises(HandshakeRefused) as refusal:
        connect(*server.address, path="/nope")
    assert refusal.value.response.status == 404
