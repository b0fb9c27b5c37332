"""Signed API tokens (JWT, PyJWT): any instance verifies them with no lookup of its own.

- An access token lives ``API_ACCESS_LIFETIME`` seconds (15 min); a refresh token as long as
  the login, ``API_TOKEN_LIFETIME``. Both carry ``sid``, the login's id, and ``lexp``, when it
  ends: logging out denylists ``sid`` in Redis until ``lexp`` (``migrate.sessions.tokens``).
- Signed with HS256 by the key ``JWT_SIGNING_KID`` names, its ``kid`` in the header; verified
  by whichever key of ``JWT_KEYS`` the ``kid`` names. Rotation: list the new key first (it
  signs), keep the old one listed until the last token it signed has expired (the refresh
  lifetime), then remove it.
- The algorithm is pinned: a token whose header says anything but HS256 (``none``, RS256 with
  our secret as a "public key", ...) is refused before any key is tried.
"""

from __future__ import annotations

import time
import uuid
from dataclasses import dataclass

import jwt
from flask import current_app

from .config import jwt_keys

ALGORITHM = "HS256"
LEEWAY = 10  # seconds of clock difference tolerated between instances
REQUIRED = ["exp", "iat", "sub", "sid", "lexp", "typ", "jti"]


class TokenError(Exception):
    """Why a token is refused: one line for the client, never the token or a key."""


@dataclass(frozen=True)
class Claims:
    user_id: int
    sid: str  # the login: revoking it revokes every token issued for it
    login_expires: float  # when the login ends (the refresh token's expiry)


def _keys() -> tuple[dict[str, str], str]:
    # Parsed once per app: config does not change while it runs.
    cached = current_app.extensions.get("api_jwt_keys")
    if cached is None:
        cached = current_app.extensions["api_jwt_keys"] = jwt_keys(current_app.config)
    return cached


def mint(user_id: int, kind: str, sid: str, login_expires: float, now: float) -> str:
    """A signed token of ``kind`` ("access" or "refresh") for the login ``sid``."""
    keys, kid = _keys()
    lifetime = (current_app.config["API_ACCESS_LIFETIME"] if kind == "access"
                else login_expires - now)
    claims = {"sub": str(user_id), "typ": kind, "sid": sid, "lexp": int(login_expires),
              "iat": int(now), "exp": int(min(now + lifetime, login_expires)),
              "jti": uuid.uuid4().hex}
    return jwt.encode(claims, keys[kid], algorithm=ALGORITHM, headers={"kid": kid})


def pair(user_id: int, sid: str, login_expires: float, now: float) -> dict:
    """What POST /api/token answers: an access token and the refresh token of the login."""
    access_lifetime = min(current_app.config["API_ACCESS_LIFETIME"], login_expires - now)
    return {"access_token": mint(user_id, "access", sid, login_expires, now),
            "token_type": "Bearer", "expires_in": int(access_lifetime),
            "refresh_token": mint(user_id, "refresh", sid, login_expires, now),
            "refresh_expires_in": int(login_expires - now)}


def verify(token: str, kind: str) -> Claims:
    """The claims of a good token of ``kind``; TokenError with the reason otherwise.

    No I/O: the signature and the expiry say all (the denylist is the caller's one lookup)."""
    try:
        header = jwt.get_unverified_header(token)
    except jwt.InvalidTokenError:
        raise TokenError("malformed token: send the access_token POST /api/token gave you") \
            from None
    if header.get("alg") != ALGORITHM:
        raise TokenError(f"token algorithm {str(header.get('alg'))[:20]!r} is not accepted: "
                         "use a token from POST /api/token")
    keys, _ = _keys()
    kid = header.get("kid")
    if not isinstance(kid, str) or kid not in keys:
        raise TokenError("token signed with a key this shop no longer has (unknown kid): "
                         "ask POST /api/token for a new one")
    try:
        claims = jwt.decode(token, keys[kid], algorithms=[ALGORITHM], leeway=LEEWAY,
                            options={"require": REQUIRED})
    except jwt.ExpiredSignatureError:
        raise TokenError("token expired: ask POST /api/token/refresh" if kind == "access" else
                         "refresh token expired: log in again with POST /api/token") from None
    except jwt.InvalidSignatureError:
        raise TokenError("token signature does not match (changed, or not made here): "
                         "ask POST /api/token for a new one") from None
    except jwt.InvalidTokenError as exc:
        reason = str(exc).splitlines()[0][:80] if str(exc) else type(exc).__name__
        raise TokenError(f"malformed token ({reason}): ask POST /api/token for a new one") \
            from None
    return _claims(claims, kind)


def _claims(claims: dict, kind: str) -> Claims:
    if claims.get("typ") != kind:
        raise TokenError(f"this is not the {kind} token: send the {kind}_token that "
                         "POST /api/token gave you")
    sub, sid, lexp = claims.get("sub"), claims.get("sid"), claims.get("lexp")
    if not (isinstance(sub, str) and sub.isascii() and sub.isdigit() and isinstance(sid, str)
            and 0 < len(sid) <= 64 and isinstance(lexp, int)):
        raise TokenError("malformed token claims: ask POST /api/token for a new one")
    if lexp <= time.time() - LEEWAY:
        raise TokenError("login expired: log in again with POST /api/token")
    return Claims(int(sub), sid, float(lexp))


def new_sid() -> str:
    return uuid.uuid4().hex
