"""uws_py.proxies: which forwarding headers are believed, and which hop is the client."""

from __future__ import annotations

import pytest

from uws_py.proxies import TrustedProxies, forwarded_chain, parse_address


@pytest.mark.parametrize("text, expected", [
    ("1.2.3.4", "1.2.3.4"), ("1.2.3.4:5678", "1.2.3.4"), ("2001:db8::1", "2001:db8::1"),
    ("[2001:db8::1]:443", "2001:db8::1"), ('"[2001:db8::1]"', "2001:db8::1"), ("::ffff:10.1.2.3", "10.1.2.3"),
    ("unknown", None), ("_hidden", None), ("", None), ("[::1", None),
])
def test_parse_address(text, expected):
    address = parse_address(text)
    assert (str(address) if address is not None else None) == expected


def test_forwarded_wins_over_x_forwarded_for_and_keeps_unknown_hops():
    assert forwarded_chain("9.9.9.9", 'for=1.1.1.1;proto=http, by=2.2.2.2, FOR="[::1]:80"') == \
        ["1.1.1.1", "unknown", "[::1]:80"]
    assert forwarded_chain(" 1.1.1.1 ,2.2.2.2", None) == ["1.1.1.1", "2.2.2.2"]
    assert forwarded_chain(None, None) == []


def test_client_address_walks_from_the_right_past_trusted_hops():
    proxies = TrustedProxies(["10.0.0.0/8", "127.0.0.1"])
    assert proxies.client_address("127.0.0.1", "6.6.6.6, 5.5.5.5, 10.0.0.3", None) == "5.5.5.5"
    assert proxies.client_address("::ffff:127.0.0.1", "5.5.5.5", None) == "5.5.5.5"
    assert proxies.client_address("127.0.0.1", "10.0.0.1, 10.0.0.2", None) == "10.0.0.1", "all trusted: left-most"
    assert proxies.client_address("127.0.0.1", "5.5.5.5, garbage, 10.0.0.2", None) == "10.0.0.2"
    assert proxies.client_address("127.0.0.1", None, None) == "127.0.0.1"
    assert proxies.client_address("192.0.2.1", "5.5.5.5", None) == "192.0.2.1", "an untrusted peer is the client"
    assert TrustedProxies([]).client_address("127.0.0.1", "5.5.5.5", None) == "127.0.0.1"


def test_bad_entries_are_named():
    with pytest.raises(ValueError, match="'10.0.0.0/33'"):
        TrustedProxies(["10.0.0.0/33"])
