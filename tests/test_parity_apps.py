"""Real apps' own unit tests, unchanged, through the parity plugin on real instances.

The shop's tests (tests/test_shop.py, written for Flask's test client) find the before-shop's
traps on two instances, each at the assertion that shows it, and pass on one; the after-shop
passes them on two, with one instance SIGKILLed mid-suite. The gallery (tests/apps/gallery,
an app migrate does not know) fails its own tests on two instances before its migration and
passes them after it.
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from migrate.cli import cli
from tests.parity_support import ROOT, processes_under

STATEFUL = ["--app-env", "INSTANCE_PATH={instance_dir}", "--app-env", "INSTANCE_NAME={instance}"]
UPGRADE = ("python -c 'import os; from sample_stateless_app.db import upgrade; "
           "upgrade(os.environ[\"DATABASE_URL\"])'")
STATELESS = ["--app-env", "INSTANCE_NAME={instance}", "--app-prepare", UPGRADE,
             "--app-worker", "python -m sample_stateless_app.worker"]
GALLERY = ROOT / "tests" / "apps" / "gallery"
GALLERY_AFTER = ["--app-env", "SESSION_TYPE=redis", "--app-env", "CACHE_TYPE=RedisCache",
                 "--app-env", "CACHE_REDIS_URL={redis}", "--app-env", "PHOTO_BUCKET={bucket}",
                 "--app-prepare", "migrate db upgrade --database-url {database_url}"]
# Each trap of the before-shop, the test that finds it, and the assertion that shows it.
TRAPS = {
    "test_login_and_logout[stateful]": "assert None == 'alice'",
    "test_cart_adds_up[stateful]": "== {1: 4, 2: 2}",
    "test_product_counter_and_recently_viewed[stateful]": "assert 1 == (1 + 1)",
    "test_avatar_round_trip[stateful]": "assert 404 == 200",
    "test_chunked_upload_round_trip[stateful]": "assert 302 == 201",
    "test_checkout_lists_order_and_sends_confirmation[stateful]": "assert 302 == 400",
}
ANYWHERE = ["test_catalog_for_anonymous_visitor[stateful]", "test_health_and_readiness[stateful]",
            "test_wrong_password_is_refused_clearly[stateful]"]

pytestmark = pytest.mark.slow


def plugin_run(*args: str, cwd: Path = ROOT) -> subprocess.Popen:
    return subprocess.Popen([sys.executable, "-m", "pytest", "-p", "no:cacheprovider", *args],
                            cwd=cwd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT,
                            text=True, env={k: v for k, v in os.environ.items()
                                            if k != "PYTEST_ADDOPTS"})


def test_the_before_shops_tests_pass_on_one_instance_and_find_its_traps_on_two():
    result = CliRunner().invoke(cli, [
        "verify", "instances", "--app", "sample_stateful_app:create_app()",
        "--tests", "tests/test_shop.py", "--pytest-args", "-k stateful",
        "--client-fixture", "client", *STATEFUL, "--json"])
    assert result.exit_code == 1, result.output
    data = json.loads(result.stdout)
    rows = {o["nodeid"].split("::")[1]: o for o in data["outcomes"]}
    assert data["ok"] is False and data["run_dir"]
    assert all(o["one"] == "passed" for o in rows.values())  # the control: one instance
    for name, assertion in TRAPS.items():
        row = rows[name]
        assert row["many"] == "failed" and row["trap"], row
        assert assertion in row["message"], row
        assert any(r.endswith("from instance-2") for r in row["requests"]), row
    assert "POST /login -> 302 from instance-1" in rows["test_login_and_logout[stateful]"][
        "requests"]
    for name in ANYWHERE:
        assert rows[name]["many"] == "passed"
    assert processes_under(data["run_dir"]) == []


def test_the_after_shops_tests_pass_on_two_instances_with_one_killed_mid_suite(tmp_path):
    # Its tests, and three of the CSRF tests (the instance client fetches and sends back the
    # form token as Flask's does); the strict-mode test sets app.config: one clear line.
    run = plugin_run(
        "tests/test_shop.py", "tests/test_shop_security.py", "--basetemp", str(tmp_path),
        "-k", "stateless and (test_shop.py or the_token_may_come_in_a_header or "
              "browser_using_the_shops_own_forms or strict_mode)",
        "--instances", "2", "--instances-kill-one", "--app", "sample_stateless_app:create_app()",
        "--instances-client-replaces", "client", *STATELESS)
    out, _ = run.communicate(timeout=300)
    summary = out.strip().splitlines()[-1]
    assert run.returncode == 1 and " 1 failed, " in summary, out[-6000:]
    assert "FAILED tests/test_shop_security.py::test_strict_mode_asks_scripts_for_the_token_too"\
           "[stateless]" in out
    assert "app.config[CSRF_STRICT] set in the test changes the app in the test's process " \
           "only; the instances run their own: give it to them with --app-env " \
           "CSRF_STRICT=VALUE" in out
    killed = [line for line in out.splitlines() if line.startswith("SIGKILLed instance-")]
    assert len(killed) == 1 and "restarted after the test" in killed[0], out[-3000:]
    assert processes_under(str(tmp_path)) == []


def test_the_gallerys_own_tests_fail_on_two_instances_before_and_pass_after(tmp_path):
    common = ["tests/apps/gallery/tests", "--instances", "2", "--app", "gallery:create_app()",
              "--app-dir", str(GALLERY), "--instances-client-replaces", "client"]
    before = plugin_run(*common, "--basetemp", str(tmp_path / "before"))
    after = plugin_run(*common, "--basetemp", str(tmp_path / "after"), *GALLERY_AFTER)
    out_before, _ = before.communicate(timeout=300)
    out_after, _ = after.communicate(timeout=300)

    assert before.returncode == 1, out_before[-4000:]
    failed = {line.split("::")[1].split(" ")[0] for line in out_before.splitlines()
              if line.startswith("FAILED ")}
    assert {"test_a_new_user_registers_and_is_signed_in", "test_a_photo_round_trip",
            "test_the_photo_count_follows_uploads"} <= failed
    assert "test_pages_ask_for_login" not in failed
    assert "POST /login -> 302 from instance-2\nGET / -> 302 from instance-1" in out_before

    assert after.returncode == 0, out_after[-6000:]
    assert " passed" in out_after.strip().splitlines()[-1] and "failed" not in out_after
    assert processes_under(str(tmp_path)) == []
