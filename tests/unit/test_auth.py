"""uws_py.auth: JWTAuth with real tokens signed by pyjwt (HS256, RS256, ES256), where the token
is found in a request, and topic patterns."""

from __future__ import annotations

import base64
import hashlib
import hmac
import json
import time
from typing import Any

import jwt
import pytest
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from uws_py.auth import AuthError, JWTAuth, topic_matches

SECRET = "test-secret-that-is-long-enough-for-hs256-0123456789"


def pem_pair(private_key: Any) -> tuple[bytes, str]:
    private_pem = private_key.private_bytes(
        serialization.Encoding.PEM, serialization.PrivateFormat.PKCS8, serialization.NoEncryption()
    )
    public_pem = private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
    )
    return private_pem, public_pem.decode()


@pytest.fixture(scope="module")
def rsa_keys() -> tuple[bytes, str]:
    return pem_pair(rsa.generate_private_key(public_exponent=65537, key_size=2048))


@pytest.fixture(scope="module")
def ec_keys() -> tuple[bytes, str]:
    return pem_pair(ec.generate_private_key(ec.SECP256R1()))


def claims(**overrides: Any) -> dict[str, Any]:
    now = int(time.time())
    base: dict[str, Any] = {"sub": "user-1", "iat": now, "exp": now + 300}
    base.update(overrides)
    return {k: v for k, v in base.items() if v is not None}


def b64url(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def refusal(auth: JWTAuth, token: str) -> AuthError:
    with pytest.raises(AuthError) as caught:
        auth.verify(token)
    return caught.value


@pytest.fixture(params=["HS256", "RS256", "ES256"])
def signer(request: Any, rsa_keys: tuple[bytes, str], ec_keys: tuple[bytes, str]) -> Any:
    """(a JWTAuth factory, a function signing claims) for one algorithm."""
    algorithm = request.param
    if algorithm == "HS256":
        signing_key: Any = SECRET
        key_kwargs: dict[str, Any] = {"secret": SECRET}
    else:
        private_pem, public_pem = rsa_keys if algorithm == "RS256" else ec_keys
        signing_key = private_pem
        key_kwargs = {"public_key": public_pem}

    def make_auth(**kwargs: Any) -> JWTAuth:
        return JWTAuth(algorithms=[algorithm], **key_kwargs, **kwargs)

    def sign(payload: dict[str, Any]) -> str:
        return jwt.encode(payload, signing_key, algorithm=algorithm)

    return make_auth, sign


def test_valid_token(signer: Any) -> None:
    make_auth, sign = signer
    payload = claims(topics=["chat.*"])
    assert make_auth().verify(sign(payload)) == payload


def test_expired(signer: Any) -> None:
    make_auth, sign = signer
    error = refusal(make_auth(), sign(claims(exp=int(time.time()) - 60)))
    assert (error.reason, error.message) == ("expired", "token expired")


def test_not_yet_valid(signer: Any) -> None:
    make_auth, sign = signer
    assert refusal(make_auth(), sign(claims(nbf=int(time.time()) + 600))).reason == "not_yet_valid"


def test_audience(signer: Any) -> None:
    make_auth, sign = signer
    auth = make_auth(audience="realtime")
    assert auth.verify(sign(claims(aud="realtime")))["aud"] == "realtime"
    assert refusal(auth, sign(claims(aud="billing"))).reason == "audience"


def test_issuer(signer: Any) -> None:
    make_auth, sign = signer
    auth = make_auth(issuer="https://issuer.example")
    assert auth.verify(sign(claims(iss="https://issuer.example")))
    assert refusal(auth, sign(claims(iss="https://evil.example"))).reason == "issuer"


def test_missing_exp_refused_by_default(signer: Any) -> None:
    make_auth, sign = signer
    error = refusal(make_auth(), sign(claims(exp=None)))
    assert error.reason == "missing_claim"
    assert "exp" in error.message


def test_missing_exp_allowed_with_require_exp_false(signer: Any) -> None:
    make_auth, sign = signer
    payload = claims(exp=None)
    assert make_auth(require_exp=False).verify(sign(payload)) == payload


def test_leeway_accepts_a_token_expired_by_less(signer: Any) -> None:
    make_auth, sign = signer
    token = sign(claims(exp=int(time.time()) - 10))
    assert make_auth(leeway=60).verify(token)["sub"] == "user-1"
    assert refusal(make_auth(leeway=2), token).reason == "expired"


def test_bad_signature(signer: Any) -> None:
    make_auth, sign = signer
    header, payload, signature = sign(claims()).split(".")
    forged_payload = b64url(json.dumps(claims(sub="admin")).encode())
    assert refusal(make_auth(), f"{header}.{forged_payload}.{signature}").reason == "signature"


def test_alg_none_refused(signer: Any) -> None:
    make_auth, _ = signer
    token = jwt.encode(claims(), None, algorithm="none")
    assert refusal(make_auth(), token).reason == "algorithm"
    for alg in ("none", "None", "NONE"):
        header = b64url(json.dumps({"alg": alg, "typ": "JWT"}).encode())
        payload = b64url(json.dumps(claims()).encode())
        assert refusal(make_auth(), f"{header}.{payload}.").reason in {"algorithm", "invalid"}


def test_hs256_token_refused_by_rs256_auth() -> None:
    auth = JWTAuth(public_key="unused", algorithms=["RS256"])
    assert refusal(auth, jwt.encode(claims(), SECRET, algorithm="HS256")).reason == "algorithm"


def test_token_signed_by_another_key_refused(rsa_keys: tuple[bytes, str]) -> None:
    other_private, _ = pem_pair(rsa.generate_private_key(public_exponent=65537, key_size=2048))
    auth = JWTAuth(public_key=rsa_keys[1], algorithms=["RS256"])
    assert refusal(auth, jwt.encode(claims(), other_private, algorithm="RS256")).reason == "signature"


def test_algorithm_confusion_refused(rsa_keys: tuple[bytes, str]) -> None:
    """An HS256 token whose HMAC key is the server's RSA public key PEM."""
    public_pem = rsa_keys[1]
    header = b64url(json.dumps({"alg": "HS256", "typ": "JWT"}).encode())
    payload = b64url(json.dumps(claims(sub="admin")).encode())
    signing_input = f"{header}.{payload}".encode()
    signature = b64url(hmac.new(public_pem.encode(), signing_input, hashlib.sha256).digest())
    forged = f"{header}.{payload}.{signature}"
    auth = JWTAuth(public_key=public_pem, algorithms=["RS256"])
    assert refusal(auth, forged).reason == "algorithm"


@pytest.mark.parametrize("token", ["", "not-a-token", "a.b.c", "eyJhbGciOiJIUzI1NiJ9.e30"])
def test_malformed_tokens(token: str) -> None:
    reason = refusal(JWTAuth(secret=SECRET), token).reason
    assert reason == ("missing" if token == "" else "invalid")


def test_public_key_with_hs256_refused(rsa_keys: tuple[bytes, str]) -> None:
    with pytest.raises(ValueError, match="algorithm confusion"):
        JWTAuth(public_key=rsa_keys[1], algorithms=["HS256"])
    with pytest.raises(ValueError):
        JWTAuth(public_key=rsa_keys[1], algorithms=["RS256", "HS512"])


@pytest.mark.parametrize("algorithms", [["RS256"], ["ES256"], ["HS256", "RS256"]])
def test_secret_with_asymmetric_algorithms_refused(algorithms: list[str]) -> None:
    with pytest.raises(ValueError, match="secret"):
        JWTAuth(secret=SECRET, algorithms=algorithms)


@pytest.mark.parametrize("algorithms", [["none"], ["HS256", "none"], ["NONE"], ["None"], []])
def test_none_or_empty_algorithms_refused(algorithms: list[str]) -> None:
    with pytest.raises(ValueError):
        JWTAuth(secret=SECRET, algorithms=algorithms)


def test_exactly_one_key() -> None:
    with pytest.raises(ValueError, match="exactly one"):
        JWTAuth()
    with pytest.raises(ValueError, match="exactly one"):
        JWTAuth(secret=SECRET, public_key="pem")


def test_repr_never_shows_the_secret() -> None:
    auth = JWTAuth(secret=SECRET, audience="realtime")
    for text in (repr(auth), str(auth), f"{auth}", f"{auth!r}"):
        assert SECRET not in text
        assert "realtime" in text


def test_repr_never_shows_the_key(rsa_keys: tuple[bytes, str]) -> None:
    auth = JWTAuth(public_key=rsa_keys[1], algorithms=["RS256"])
    assert "BEGIN" not in repr(auth)


# -- where the token is read --------------------------------------------------------------


@pytest.fixture
def auth() -> JWTAuth:
    return JWTAuth(secret=SECRET)


def test_token_from_authorization_header(auth: JWTAuth) -> None:
    assert auth.token_from_request("Bearer abc", None, None) == ("abc", None)
    assert auth.token_from_request("bearer   abc  ", None, None) == ("abc", None)


def test_authorization_beats_query_and_protocol(auth: JWTAuth) -> None:
    assert auth.token_from_request("Bearer from-header", "from-query", "bearer, from-protocol") == ("from-header", None)


def test_query_beats_protocol(auth: JWTAuth) -> None:
    assert auth.token_from_request(None, "from-query", "bearer, from-protocol") == ("from-query", None)


@pytest.mark.parametrize("authorization", ["Basic dXNlcjpwYXNz", "Bearer", "Bearer   ", "", "abc"])
def test_non_bearer_authorization_falls_through_to_query(auth: JWTAuth, authorization: str) -> None:
    assert auth.token_from_request(authorization, "from-query", None) == ("from-query", None)


def test_token_from_protocol_offer_selects_bearer(auth: JWTAuth) -> None:
    assert auth.token_from_request(None, None, "bearer, abc.def.ghi") == ("abc.def.ghi", "bearer")
    assert auth.token_from_request(None, "", "chat.v1, bearer,abc") == ("abc", "bearer")


@pytest.mark.parametrize("protocols", [None, "", "bearer", "chat.v1", "abc, bearer"])
def test_no_token_anywhere(auth: JWTAuth, protocols: Any) -> None:
    assert auth.token_from_request(None, None, protocols) == ("", None)


def test_no_token_is_refused_as_missing(auth: JWTAuth) -> None:
    token, _ = auth.token_from_request(None, None, None)
    assert refusal(auth, token).reason == "missing"


def test_query_parameter_default() -> None:
    assert JWTAuth(secret=SECRET).query_parameter == "token"


# -- topics -------------------------------------------------------------------------------


def test_topics_allowed_absent_claim_means_any(auth: JWTAuth) -> None:
    assert auth.topics_allowed({"sub": "u"}) is None


def test_topics_allowed_list_and_string(auth: JWTAuth) -> None:
    assert auth.topics_allowed({"topics": ["chat.*", "news"]}) == ["chat.*", "news"]
    assert auth.topics_allowed({"topics": "chat.*"}) == ["chat.*"]
    assert auth.topics_allowed({"topics": []}) == []


@pytest.mark.parametrize("granted", [5, None, {"chat": True}, ["chat", 3]])
def test_topics_allowed_malformed_claim_grants_nothing(auth: JWTAuth, granted: Any) -> None:
    assert auth.topics_allowed({"topics": granted}) == []


def test_topics_claim_can_be_renamed_or_off() -> None:
    assert JWTAuth(secret=SECRET, topics_claim="rooms").topics_allowed({"rooms": ["a"], "topics": ["b"]}) == ["a"]
    assert JWTAuth(secret=SECRET, topics_claim=None).topics_allowed({"topics": ["b"]}) is None


def test_topics_claim_from_a_verified_token(auth: JWTAuth) -> None:
    verified = auth.verify(jwt.encode(claims(topics=["chat.*"]), SECRET, algorithm="HS256"))
    assert auth.topics_allowed(verified) == ["chat.*"]


@pytest.mark.parametrize(
    "patterns, topic, allowed",
    [
        (None, "anything", True),
        ([], "chat.1", False),
        (["chat.*"], "chat.1", True),
        (["chat.*"], "chat.room.7", True),  # fnmatch: * crosses dots
        (["chat.*"], "chat", False),
        (["chat.*"], "CHAT.1", False),  # case-sensitive
        (["chat.?"], "chat.1", True),
        (["chat.?"], "chat.12", False),
        (["room.[ab]"], "room.a", True),
        (["room.[ab]"], "room.c", False),
        (["news", "chat.*"], "news", True),
        (["news"], "news.sport", False),
        (["*"], "x", True),
    ],
)
def test_topic_matches(patterns: Any, topic: str, allowed: bool) -> None:
    assert topic_matches(patterns, topic) is allowed
