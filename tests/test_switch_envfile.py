"""switch-config's dotenv handling: python-dotenv decides where a value ends; the rest of the file
survives byte for byte (multi-line values, export, comments, CRLF, lines it cannot read)."""

from __future__ import annotations

from pathlib import Path

import pytest
from dotenv import dotenv_values

from migrate.errors import UsageError
from migrate.runbook import envfile
from migrate.runbook.switch import switch_config

STRONG = "b7f1c0d2e3a4958677aa1b2c3d4e5f60"
CERT = ('"-----BEGIN CERTIFICATE-----\nMIIB\\"quoted\\"\n# not a comment\nKEY=not-a-key\n'
        '-----END-----"')
UNTOUCHED = [
    "# the app, before\n",
    f"export SECRET_KEY={STRONG}\n",
    f"TLS_CERT={CERT}   # inline comment after a multi-line value\n",
    "   \n",
    "GREETING='hello # not a comment'  # but this is\n",
    "EMPTY=\n",
    "SPACED = spaced value  # comment\n",
    "this line is not dotenv at all\n",
    "BARE_KEY\n",
    "export MAIL_PASSWORD='hunter2'\n",
]


def _file(tmp_path: Path, lines: list[str], newline: str = "\n") -> Path:
    path = tmp_path / ".env"
    text = "".join(lines)
    path.write_bytes(text.replace("\n", newline).encode() if newline != "\n" else text.encode())
    return path


def test_the_parser_returns_the_file_whole_and_splits_values_where_dotenv_does():
    # Fails loudly if python-dotenv changes what parse_stream / parse_value return.
    text = "".join(UNTOUCHED) + "\r\nexport A='x' # c\r\nB=\"y\"\rC=z"
    entries = envfile.parse(text)
    assert "".join(e.original for e in entries) == text
    values = {e.key: e.value for e in entries if e.key}
    assert values["TLS_CERT"].startswith("-----BEGIN CERTIFICATE-----\nMIIB\"quoted\"\n# not")
    assert values["GREETING"] == "hello # not a comment" and values["SPACED"] == "spaced value"
    assert [e.error for e in entries].count(True) == 1  # the prose line
    for entry in entries:
        if entry.key and not entry.error:
            parts = envfile.split(entry)
            assert parts.head + parts.token + parts.tail == entry.original
    cert = next(e for e in entries if e.key == "TLS_CERT")
    assert envfile.split(cert).token == CERT
    greeting = envfile.split(next(e for e in entries if e.key == "GREETING"))
    assert (greeting.token, greeting.style) == ("'hello # not a comment'", "'")
    assert greeting.tail == "  # but this is\n"


@pytest.mark.parametrize("newline", ["\n", "\r\n"])
def test_only_changed_bindings_are_rewritten(tmp_path: Path, newline: str):
    lines = [*UNTOUCHED, "SESSION_TYPE='cachelib'   # per host\n",
             'export CACHE_TYPE="SimpleCache"\n', "CACHE_DIR=/var/cache/app\n",
             'BROKEN="never closed (python-dotenv reads up to the next quote, or fails)\n']
    path = _file(tmp_path, lines, newline)
    before = path.read_bytes()
    result = switch_config(path, redis_url="redis://10.0.0.5:6379/0", probe=False)
    after = path.read_bytes()
    assert result.written
    nl = newline.encode()
    # Every untouched line is still there, byte for byte, in order, with its line ending.
    untouched = b"".join(x.replace("\n", newline).encode() for x in UNTOUCHED)
    assert after.startswith(untouched) and before.startswith(untouched)
    rest = after[len(untouched):].split(nl)
    assert rest[0] == b"SESSION_TYPE='redis'   # per host"  # quoting and comment kept
    assert rest[1] == b'export CACHE_TYPE="RedisCache"'
    assert rest[2].startswith(b"# migrate: was CACHE_DIR=/var/cache/app (the cache now")
    assert rest[3] == b'BROKEN="never closed (python-dotenv reads up to the next quote, or fails)'

    if newline == "\r\n":  # no line ending mixed in
        assert after.count(b"\n") == after.count(b"\r\n")
    values = dotenv_values(path, interpolate=False)
    assert values["CACHE_REDIS_URL"] == values["REDIS_URL"] == "redis://10.0.0.5:6379/0"
    old = dotenv_values(result.backup, interpolate=False)
    assert values["TLS_CERT"] == old["TLS_CERT"] and values["SPACED"] == old["SPACED"]
    assert Path(result.backup).read_bytes() == before
    assert result.notes == ["line 12: python-dotenv cannot read it; left as is",
                            "line 18: python-dotenv cannot read it; left as is"]


def test_bom_and_a_last_line_without_newline_survive(tmp_path: Path):
    path = tmp_path / ".env"
    path.write_bytes(f"\ufeffSECRET_KEY={STRONG}\nSESSION_TYPE=filesystem".encode())
    switch_config(path, redis_url="redis://h:6379/0", probe=False)
    data = path.read_bytes().decode()
    assert data.startswith(f"\ufeffSECRET_KEY={STRONG}\nSESSION_TYPE=redis\n")
    assert data.endswith("REDIS_URL=redis://h:6379/0\n")


def test_a_duplicate_key_is_set_everywhere_so_the_last_one_still_wins(tmp_path: Path):
    path = _file(tmp_path, [f"SECRET_KEY={STRONG}\n", "SESSION_TYPE=cachelib\n", "# later\n",
                            "SESSION_TYPE=filesystem\n"])
    switch_config(path, redis_url="redis://h/0", probe=False)
    lines = path.read_text().splitlines()
    assert lines[1] == lines[3] == "SESSION_TYPE=redis" and lines[2] == "# later"


@pytest.mark.parametrize("value", ["plain", "with space", "it's", 'dq"and\'sq', "back\\slash",
                                   "multi\nline", "#hash", "", "x=y", "tab\there"])
@pytest.mark.parametrize("style", ["", "'", '"'])
def test_render_keeps_the_style_when_it_can_and_always_round_trips(tmp_path: Path, value: str,
                                                                     style: str):
    path = tmp_path / "r.env"
    path.write_text(f"K={envfile.render(value, style)}\nNEXT=1\n")
    assert dotenv_values(path, interpolate=False) == {"K": value, "NEXT": "1"}
    if style == '"':
        assert path.read_text().startswith('K="')
    if style == "'" and "'" not in value and "\\" not in value:
        assert path.read_text().startswith("K='")


def test_reading_is_bounded_and_utf8(tmp_path: Path):
    big = tmp_path / "big.env"
    big.write_bytes(b"A=" + b"x" * envfile.MAX_BYTES + b"\n")
    with pytest.raises(UsageError, match="over 1048576 bytes"):
        envfile.read(big)
    latin = tmp_path / "latin.env"
    latin.write_bytes(b"NAME=caf\xe9\n")
    with pytest.raises(UsageError, match="not UTF-8"):
        envfile.read(latin)
    with pytest.raises(UsageError, match="no such file"):
        envfile.read(tmp_path / "missing.env")


def test_masked_hides_secrets_in_multiline_values_and_comments():
    text = (f'SECRET_KEY="{STRONG}\nsecond-line-secret"\n# API_TOKEN=commented-token\n'
            "DB=postgresql://u:pg-pass@h/db\nPLAIN=shown\n")
    shown = envfile.masked(text)
    for secret in (STRONG, "second-line-secret", "commented-token", "pg-pass"):
        assert secret not in shown
    assert "SECRET_KEY=***\n" in shown and "# API_TOKEN=***\n" in shown
    assert "PLAIN=shown" in shown and "postgresql://u:***@h/db" in shown
