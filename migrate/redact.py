"""The one redactor: what of a URL, a setting or a command line may be shown or logged.

Every package prints and journals through these functions, so a password is hidden the same way
everywhere. A password may hold ``@`` or ``:`` (RFC 3986 wants them percent-encoded, but people
paste them raw): the userinfo ends at the *last* ``@`` before the host, as in ``urlsplit``.
"""

from __future__ import annotations

import re
from typing import Any
from urllib.parse import parse_qsl, urlencode, urlsplit

MASK = "***"
# Query parameters that carry secrets in some store URLs (e.g. ?password= in redis-py).
_SECRET_PARAMS = ("password", "secret", "token", "key", "signature", "credential")
# A URL's ``scheme://user:password@`` inside free text. The password runs to the last ``@``
# before whitespace, a quote or the path: greedy, then backtracking to that ``@``.
# Names with KEY in them that hold no secret.
_NOT_SECRET_KEY_ENDINGS = ("KEY_PREFIX", "PUBLIC_KEY", "KEY_ID", "KEY_FUNC", "KEYS")
# ``NAME=value`` (a --set argument, a dotenv assignment): the value is masked by NAME.
_ASSIGNMENT = re.compile(r"^(?P<name>[A-Za-z_][A-Za-z0-9_.]*)=(?P<value>.*)$", re.S)
_URL_PASSWORD = re.compile(r"([A-Za-z][A-Za-z0-9+.-]*://[^:/@\s'\"]*:)([^\s'\"/]+)@")
# A secret-looking query parameter of a URL inside free text (a Sentinel URL's
# ``?sentinel_password=``, redis-py's ``?password=``): masked up to the next ``&``, ``#``,
# whitespace or quote.
_QUERY_SECRET = re.compile(
    r"([?&][A-Za-z0-9_.-]*(?:password|secret|token|key|signature|credential)[A-Za-z0-9_.-]*=)"
    r"([^&#\s'\"]+)", re.I)


def is_secret_key(key: str) -> bool:
    """Keys whose values are never shown: *SECRET*, *PASS* (PASSWORD, PASSWD), *TOKEN*, *KEY*.

    A ``KEY`` that names no secret (a prefix, a public key, an access key's id) is shown.
    """
    upper = key.upper().replace("-", "_")
    if any(word in upper for word in ("SECRET", "PASS", "TOKEN", "CREDENTIAL", "PRIVATE")):
        return True
    return "KEY" in upper and not upper.endswith(_NOT_SECRET_KEY_ENDINGS)


def url(value: str) -> str:
    """``value`` with its password (and secret-looking query values) replaced by ``***``."""
    try:
        parts = urlsplit(value)
        password = parts.password
    except ValueError:
        return "<unparseable URL>"
    netloc = parts.netloc
    if password is not None:
        userinfo, _, hostport = netloc.rpartition("@")
        user = userinfo.partition(":")[0]
        netloc = f"{user}:{MASK}@{hostport}"
    query = parts.query
    if query:
        pairs = parse_qsl(query, keep_blank_values=True)
        if any(_secret_param(k) for k, _ in pairs):
            query = urlencode([(k, MASK if _secret_param(k) else v) for k, v in pairs],
                              safe="*")
    if netloc == parts.netloc and query == parts.query:
        return value  # nothing secret; urlunsplit would mangle e.g. sqlite:////abs/path
    return (f"{parts.scheme}://{netloc}{parts.path}" + (f"?{query}" if query else "")
            + (f"#{parts.fragment}" if parts.fragment else ""))


def text(value: str) -> str:
    """Free text (an error message, a dotenv line) with every URL password in it masked, in the
    userinfo (``redis+sentinel://:pw@h1,h2/...`` too) and in secret query parameters."""
    return _QUERY_SECRET.sub(rf"\1{MASK}", _URL_PASSWORD.sub(rf"\1{MASK}@", value))


def value(key: str, raw: str) -> str:
    """A setting's value as it may be shown: ``***`` for a secret key, URL passwords masked.

    A ``NAME=value`` value (``--set API_TOKEN=...``) is masked by NAME as well.
    """
    if is_secret_key(key):
        return MASK
    assignment = _ASSIGNMENT.match(raw)
    if assignment and is_secret_key(assignment["name"]):
        return f"{assignment['name']}={MASK}"
    return text(raw)


def argv(args: list[str]) -> list[str]:
    """A command line with secret option values and URL passwords masked (for the journal)."""
    out: list[str] = []
    hide_next = False
    for arg in args:
        if hide_next:
            out.append(MASK)
            hide_next = False
            continue
        name, eq, rest = arg.partition("=")
        secret_option = arg.startswith("--") and is_secret_key(name[2:])
        if arg.startswith("--") and eq:  # --option=value
            out.append(f"{name}={MASK if secret_option else value('', rest)}")
        elif secret_option:
            out.append(arg)
            hide_next = True
        else:
            out.append(value("", arg))  # a NAME=value argument is masked by NAME
    return out


def params(options: dict[str, Any]) -> dict[str, Any]:
    """A command's options as they may be journalled: unset ones left out, secrets masked."""
    out: dict[str, Any] = {}
    for name, raw in options.items():
        if raw is None or raw == () or raw is False:
            continue
        if isinstance(raw, (list, tuple)):
            out[name] = [value(name, str(v)) for v in raw]
        elif isinstance(raw, (bool, int, float)):
            out[name] = MASK if is_secret_key(name) else raw
        else:
            out[name] = value(name, str(raw))
    return out


def _secret_param(name: str) -> bool:
    lowered = name.lower()
    return any(s in lowered for s in _SECRET_PARAMS)
