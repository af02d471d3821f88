"""The realtime message scanner (cpp/src/RealtimeScan.cpp, seen through
uws_py._core._scan_realtime_message) against orjson.loads: whatever the scanner says it knows,
orjson must accept, with the same top-level keys and the same field values; a plain string or
integer field must be what orjson.dumps writes back for its value. And the messages clients
send every day (compact or spaced JSON objects without floats or escapes) must be known, or
the fast path would never be taken."""

from __future__ import annotations

import json
from typing import Any

import orjson
from hypothesis import HealthCheck, example, given, settings
from hypothesis import strategies as st

from uws_py._core import _scan_realtime_message as scan

FIELDS = ("type", "id", "topic", "data", "echo")
KINDS = {type(None): "null", bool: None, int: "integer", float: "number", str: "string", list: "array", dict: "object"}


def kind_of(value: Any) -> str:
    if value is True:
        return "true"
    if value is False:
        return "false"
    return KINDS[type(value)]


def check_against_orjson(text: bytes) -> None:
    verdict = scan(text)
    if verdict is None:
        return
    decoded = orjson.loads(text)  # raises (and fails the test) if the scanner knew invalid JSON
    assert type(decoded) is dict
    assert verdict["keys"] == len(decoded)  # no duplicate keys among the known
    for field in FIELDS:
        assert (field in verdict) == (field in decoded)
        if field not in verdict:
            continue
        kind, raw, plain = verdict[field]
        value = decoded[field]
        assert kind == kind_of(value) or (kind == "number" and isinstance(value, float))
        assert orjson.loads(raw) == value
        if plain:
            assert orjson.dumps(value) == raw  # the fast path copies raw into its replies
            if kind == "integer":
                assert abs(value) <= 2**53
        elif kind == "string":
            assert b"\\" in raw


spaces = st.sampled_from(["", " ", "\n", "\t", "\r\n ", "  "])
ids = st.sampled_from(["1", "0", "-0", "1.0", "1e2", "-7", str(2**53), str(2**53 + 1), str(-2**53), str(2**60),
                       str(2**64), "01", '"abc"', '""', '"\\u0041"', '"é"', '"x\\"y"', "null", "true", "[1]", '{"a":1}'])
types = st.sampled_from(['"PING"', '"SUBSCRIBE"', '"UNSUBSCRIBE"', '"P\\u0049NG"', '"PONG"', '""', "1", "null"])
scalars = st.none() | st.booleans() | st.integers(-2**70, 2**70) | st.floats(allow_nan=False) | st.text(max_size=8)
values = st.recursive(scalars, lambda children: st.lists(children, max_size=3)
                      | st.dictionaries(st.text(max_size=4), children, max_size=3), max_leaves=10)
value_texts = values.map(lambda v: json.dumps(v, ensure_ascii=False)) | values.map(json.dumps) | ids | types
keys = st.sampled_from(['"type"', '"id"', '"topic"', '"data"', '"extra"', '"typ\\u0065"', '"é"', '""'])


@st.composite
def objects(draw: st.DrawFn) -> bytes:
    """A JSON-object-like text: fields from the realtime vocabulary with odd values, spaced
    anyhow, sometimes with a key twice; then maybe one character inserted, removed or replaced."""
    members = draw(st.lists(st.tuples(keys, value_texts), max_size=5))
    if draw(st.booleans()):
        members.insert(0, ('"type"', draw(types)))
    parts = [draw(spaces) + key + draw(spaces) + ":" + draw(spaces) + value + draw(spaces) for key, value in members]
    text = draw(spaces) + "{" + ",".join(parts) + (draw(spaces) if not parts else "") + "}" + draw(spaces)
    mutation = draw(st.sampled_from(["none", "none", "insert", "delete", "replace"]))
    if mutation != "none" and text:
        at = draw(st.integers(0, len(text) - 1))
        char = draw(st.sampled_from(list('{}[]",:\\ 0-.eEtfnu\x00\x01\x7f') + ["é", "x"]))
        if mutation == "insert":
            text = text[:at] + char + text[at:]
        elif mutation == "delete":
            text = text[:at] + text[at + 1:]
        else:
            text = text[:at] + char + text[at + 1:]
    return text.encode()


@settings(max_examples=1500, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(objects() | st.binary(max_size=30) | values.map(lambda v: json.dumps(v).encode()))
@example(b'{"type":"PING","id":-0}')
@example(b'{"type":"PING","type":"PONG"}')
@example(b'{"a":"\\ud83d\\ude00"}')
@example(b'{"a":1e400}')
@example(b'{"a":' + b"[" * 40 + b"]" * 40 + b"}")
@example(b'\xef\xbb\xbf{"type":"PING"}')
@example(b'{"a":"\xed\xa0\x80"}')
def test_what_the_scanner_knows_orjson_reads_alike(text):
    check_against_orjson(text)


plain_scalars = st.none() | st.booleans() | st.integers(-2**53, 2**53) | st.text(
    st.characters(blacklist_categories=("Cs",), blacklist_characters='"\\', min_codepoint=0x20), max_size=8)
plain_values = st.recursive(plain_scalars, lambda children: st.lists(children, max_size=3)
                            | st.dictionaries(st.text(st.characters(blacklist_categories=("Cs",), min_codepoint=0x20,
                                                                    blacklist_characters='"\\'), max_size=4),
                                              children, max_size=3), max_leaves=10)


@settings(max_examples=300, deadline=None)
@given(st.dictionaries(st.sampled_from(["type", "id", "topic", "data", "echo", "x", "é"]), plain_values, max_size=5),
       st.booleans())
def test_everyday_messages_are_known_with_their_fields(message, spaced):
    text = (json.dumps(message, ensure_ascii=False, indent=1 if spaced else None, separators=None if spaced else (",", ":"))
            .encode())
    verdict = scan(text)
    assert verdict is not None, text
    check_against_orjson(text)
    for field in FIELDS:
        if field in message and not spaced:
            assert verdict[field][2], (field, text)  # plain: the fast path can copy it
