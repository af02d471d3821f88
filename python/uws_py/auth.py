"""JWT authentication at the upgrade (pyjwt)."""

from __future__ import annotations

import fnmatch
from dataclasses import dataclass, field
from typing import Any, NamedTuple, Optional, Sequence

import jwt

_SYMMETRIC = {"HS256", "HS384", "HS512"}


class AuthError(Exception):
    """A token was refused; ``reason`` is a short label for logs and metrics."""

    def __init__(self, reason: str, message: str) -> None:
        super().__init__(message)
        self.reason = reason
        self.message = message


@dataclass
class JWTAuth:
    """Verifies JSON Web Tokens with pyjwt.

    Give ``secret`` for HMAC (HS256/384/512) or ``public_key`` (PEM) for RS*/ES*/PS*/EdDSA;
    mixing them is refused at construction, which rules out algorithm confusion (an HS256
    token "signed" with an RSA public key). ``alg: none`` is never accepted. ``exp`` is
    required unless ``require_exp`` is False; ``leeway`` is in seconds.
    ``topics_claim`` names an optional claim listing the topic patterns (``fnmatch`` style,
    e.g. ``"chat.*"``) the client may subscribe and publish to; absent means any topic.
    The token is read from ``Authorization: Bearer``, the ``token`` query parameter, or a
    ``Sec-WebSocket-Protocol`` offer of ``bearer, <token>`` (browsers cannot set headers).
    """

    secret: Optional[str] = None
    public_key: Optional[str] = None
    algorithms: Sequence[str] = ("HS256",)
    audience: Optional[str] = None
    issuer: Optional[str] = None
    leeway: float = 0.0
    require_exp: bool = True
    user_id_claim: str = "sub"
    topics_claim: Optional[str] = "topics"
    query_parameter: str = "token"
    _key: Any = field(init=False, repr=False, default=None)

    def __post_init__(self) -> None:
        if (self.secret is None) == (self.public_key is None):
            raise ValueError("JWTAuth needs exactly one of secret= or public_key=")
        algorithms = list(self.algorithms)
        if not algorithms or any(a.lower() == "none" for a in algorithms):
            raise ValueError("JWTAuth algorithms must be listed and cannot include 'none'")
        symmetric = [a for a in algorithms if a in _SYMMETRIC]
        if self.secret is not None and len(symmetric) != len(algorithms):
            raise ValueError("a secret verifies only HS256/HS384/HS512 tokens")
        if self.public_key is not None and symmetric:
            raise ValueError("a public key must not be used with HS* algorithms (algorithm confusion)")
        self.algorithms = algorithms
        self._key = self.secret if self.secret is not None else self.public_key

    def __repr__(self) -> str:  # never show the secret
        return f"JWTAuth(algorithms={self.algorithms!r}, audience={self.audience!r}, issuer={self.issuer!r})"

    def verify(self, token: str) -> dict[str, Any]:
        """The token's claims; raises AuthError with the reason of the refusal."""
        if not token:
            raise AuthError("missing", "no token")
        options = {"require": ["exp"] if self.require_exp else []}
        try:
            return jwt.decode(
                token,
                self._key,
                algorithms=self.algorithms,
                audience=self.audience,
                issuer=self.issuer,
                leeway=self.leeway,
                options=options,
            )
        except jwt.ExpiredSignatureError:
            raise AuthError("expired", "token expired") from None
        except jwt.ImmatureSignatureError:
            raise AuthError("not_yet_valid", "token not yet valid") from None
        except jwt.InvalidAudienceError:
            raise AuthError("audience", "wrong audience") from None
        except jwt.InvalidIssuerError:
            raise AuthError("issuer", "wrong issuer") from None
        except jwt.MissingRequiredClaimError as exc:
            raise AuthError("missing_claim", str(exc)) from None
        except jwt.InvalidAlgorithmError:
            raise AuthError("algorithm", "algorithm not allowed") from None
        except jwt.InvalidSignatureError:
            raise AuthError("signature", "bad signature") from None
        except jwt.InvalidTokenError as exc:
            raise AuthError("invalid", f"invalid token: {exc}") from None

    def token_from_request(self, authorization: Optional[str], query_token: Optional[str], protocols: Optional[str]) -> tuple[str, Optional[str]]:
        """(token, subprotocol to answer with) from the three places a token may be."""
        if authorization:
            scheme, _, value = authorization.partition(" ")
            if scheme.lower() == "bearer" and value.strip():
                return value.strip(), None
        if query_token:
            return query_token, None
        if protocols:
            offered = [p.strip() for p in protocols.split(",")]
            for index, name in enumerate(offered[:-1]):
                if name.lower() == "bearer":
                    return offered[index + 1], name
        return "", None

    def topics_allowed(self, claims: dict[str, Any]) -> Optional[list[str]]:
        """The topic patterns the claims grant, or None for no restriction."""
        if not self.topics_claim or self.topics_claim not in claims:
            return None
        granted = claims[self.topics_claim]
        if isinstance(granted, str):
            return [granted]
        if isinstance(granted, list) and all(isinstance(p, str) for p in granted):
            return granted
        return []


def topic_matches(patterns: Optional[list[str]], topic: str) -> bool:
    """Is topic allowed by these fnmatch-style patterns (None allows everything)?"""
    if patterns is None:
        return True
    return any(fnmatch.fnmatchcase(topic, pattern) for pattern in patterns)


class Identity(NamedTuple):
    """Who a set of claims names: ``user_id`` (a str or None) and ``expires_at`` (the
    ``exp`` claim in seconds since the epoch, None when absent or not a number)."""

    user_id: Optional[str]
    expires_at: Optional[float]


def identity(claims: dict[str, Any], user_id_claim: str = "sub") -> Identity:
    """The one rule turning claims into an identity, at the upgrade and on AUTH.

    Args:
        claims: verified claims (or those an authenticate hook returned).
        user_id_claim: the claim holding the user id (``JWTAuth.user_id_claim``).
    """
    user = claims.get(user_id_claim)
    exp = claims.get("exp")
    return Identity(None if user is None else str(user), float(exp) if isinstance(exp, (int, float)) else None)
