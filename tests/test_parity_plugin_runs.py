"""The parity plugin as a team uses it: pytest with --instances on a suite written for Flask's
test client, in a subprocess. A trap fails at the test's own assertion with the instance of
each last request; bad input is one line; nothing outlives the run, Ctrl-C included."""

from __future__ import annotations

import json
import signal
import time
import uuid
from pathlib import Path

import pytest

from tests.parity_support import processes_under, run_pytest, start_pytest, write_tiny_project


def module_name() -> str:
    return f"tiny_{uuid.uuid4().hex[:8]}"  # unique: /proc shows whose processes are whose


def test_a_trap_fails_at_its_assertion_naming_the_instances(tmp_path: Path):
    module = module_name()
    folder = write_tiny_project(tmp_path / "project", module)
    report = tmp_path / "report.json"
    run = run_pytest(folder, "tests", "--instances", "2", "--app", f"{module}:create_app()",
                     "--instances-client-replaces", "client", "--app-env", "INSTANCE={instance}",
                     "--instances-report", str(report))
    out = run.stdout
    assert run.returncode == 1, out + run.stderr
    assert "parity: 2 instance(s) of " + module in out
    assert "2 failed, 2 passed" in out
    # The failing assertion is the test's own, and the requests name who answered each.
    assert "assert {'user': None} == {'user': 'ada'}" in out
    assert "instances: the last requests, oldest first, and who answered" in out
    assert "POST /memory/login -> 302 from instance-1\nGET /memory/me -> 200 from instance-2" in out
    assert "POST /count -> 200 from instance-1\nPOST /count -> 200 from instance-2" in out
    assert "instances: instance-2 logged during the test" not in out or "instance-2" in out
    assert "the logs stay in" in out

    data = json.loads(report.read_text())
    outcomes = {t["nodeid"].split("::")[1]: t for t in data["tests"]}
    assert {n: t["outcome"] for n, t in outcomes.items()} == {
        "test_signed_session_survives": "passed", "test_memory_session_survives": "failed",
        "test_counter_counts": "failed", "test_no_request_at_all": "passed"}
    assert outcomes["test_memory_session_survives"]["requests"][-1] == (
        "GET /memory/me -> 200 from instance-2")
    assert outcomes["test_no_request_at_all"]["uses_instances"] is False
    assert processes_under(str(folder)) == []  # a failing run leaves nothing running


def test_one_instance_from_the_ini_file_passes_the_same_suite(tmp_path: Path):
    module = module_name()
    folder = write_tiny_project(tmp_path / "project", module)
    (folder / "pytest.ini").write_text(
        "[pytest]\ninstances = 1\n"
        f"instances_app = {module}:create_app()\n"
        "instances_client_replaces = client\n"
        "instances_app_env =\n    INSTANCE={instance}\n", encoding="utf-8")
    run = run_pytest(folder, "tests")
    assert run.returncode == 0, run.stdout + run.stderr
    assert "4 passed" in run.stdout and "parity: 1 instance(s)" in run.stdout


def test_a_conftest_alias_is_the_apps_own_client_without_instances(tmp_path: Path):
    module = module_name()
    folder = write_tiny_project(tmp_path / "project", module, tests=(
        "def test_memory_session(client):\n"
        "    client.post('/memory/login', data={'user': 'ada'})\n"
        "    assert client.get('/memory/me').json == {'user': 'ada'}\n"
        "    assert type(client).__name__ == CLIENT\n"))
    conftest = folder / "tests" / "conftest.py"
    conftest.write_text(conftest.read_text() + (
        "\n@pytest.fixture\ndef client(instance_client):  # the documented one-line change\n"
        "    return instance_client\n"), encoding="utf-8")
    test = folder / "tests" / "test_tiny.py"
    test.write_text("import os\nCLIENT = os.environ['CLIENT']\n" + test.read_text())
    plain = run_pytest(folder, "tests", env={"CLIENT": "FlaskClient"})
    assert plain.returncode == 0, plain.stdout
    assert "parity" not in plain.stdout
    across = run_pytest(folder, "tests", "--instances", "2", "--app", f"{module}:create_app()",
                        env={"CLIENT": "InstanceClient"})
    assert across.returncode == 1 and "assert {'user': None} == {'user': 'ada'}" in across.stdout


# --app names an app that cannot start: what it is, the line that says why, the fix it names.
BAD_APPS = {
    "no_module": ("nosuchmodule_{m}:create_app()", "",
                  "ModuleNotFoundError: No module named 'nosuchmodule_{m}'", "--app-dir"),
    "factory_raises": ("bad_{m}:create_app()",
                       "def create_app():\n    raise RuntimeError('DATABASE_URL is odd')\n",
                       "did not start: RuntimeError: DATABASE_URL is odd", "--app-env"),
    "never_answers": ("bad_{m}:create_app()",
                      "import time\ntime.sleep(60)\ndef create_app():\n    pass\n",
                      "did not answer GET /healthz within 2 s", "--instances-start-timeout"),
    "wrong_attribute": ("bad_{m}:make_it()", "def create_app():\n    pass\n",
                        "Failed to find attribute 'make_it'", "'package:create_app()'"),
}


@pytest.mark.parametrize("case", sorted(BAD_APPS))
def test_an_app_that_does_not_start_is_one_line_naming_the_fix(tmp_path: Path, case: str):
    from migrate.errors import MigrateError
    from migrate.parity import Instances, ParitySettings

    spec, source, problem, fix = BAD_APPS[case]
    module = module_name()
    (tmp_path / f"bad_{module}.py").write_text(source, encoding="utf-8")
    settings = ParitySettings(app=spec.format(m=module), instances=2, app_dir=tmp_path,
                              start_timeout=2)
    started = time.monotonic()
    with pytest.raises(MigrateError) as failed:
        Instances(settings, tmp_path / "run").start()
    message = str(failed.value)
    assert problem.format(m=module) in message and fix in message, message
    assert "\n" not in message and "instance-1" in message
    assert time.monotonic() - started < 30
    assert processes_under(module) == [] and processes_under(str(tmp_path / "run")) == []


def test_in_pytest_an_app_that_does_not_start_stops_the_run_in_one_line(tmp_path: Path):
    module = module_name()
    folder = write_tiny_project(tmp_path / "project", module)
    (folder / f"bad_{module}.py").write_text(BAD_APPS["factory_raises"][1], encoding="utf-8")
    run = run_pytest(folder, "tests", "--instances", "2", "--app", f"bad_{module}:create_app()",
                     "--instances-client-replaces", "client")
    out = run.stdout + run.stderr
    assert run.returncode == 2, out  # interrupted: the first test's error stops the run
    problem = [line for line in out.splitlines() if "DATABASE_URL is odd" in line]
    assert problem[0].startswith("instance-1 of --app") and "--app-env" in problem[0], out
    assert "Traceback" not in out and "1 error" in out
    assert "Interrupted: the instances did not start (see the error above)" in out
    assert processes_under(str(folder)) == [] and processes_under(module) == []


def test_bad_options_are_one_line_before_anything_starts(tmp_path: Path):
    folder = write_tiny_project(tmp_path / "project", module_name())
    for args, expected in [
        (["--instances", "2"], "--instances needs --app"),
        (["--instances", "2", "--app", "x:y()", "--app-env", "NOPE"], "give KEY=VALUE"),
        (["--instances", "1", "--app", "x:y()", "--instances-kill-one"], "at least 2"),
    ]:
        run = run_pytest(folder, "tests", *args)
        assert run.returncode == 4, run.stdout + run.stderr  # usage error
        assert expected in run.stderr and "Traceback" not in run.stderr


def test_ctrl_c_mid_suite_stops_every_process_the_run_started(tmp_path: Path):
    module = module_name()
    folder = write_tiny_project(tmp_path / "project", module, tests=(
        "import time\n\n"
        "def test_waits(client):\n"
        "    assert client.get('/healthz').status_code == 200\n"
        "    time.sleep(60)\n"))
    process = start_pytest(folder, "tests", "--instances", "2", "--app",
                           f"{module}:create_app()", "--instances-client-replaces", "client")
    try:
        deadline = time.monotonic() + 60
        while len(processes_under(module)) < 4:  # two masters, two workers
            assert process.poll() is None, process.stdout.read()
            assert time.monotonic() < deadline, "the instances did not start"
            time.sleep(0.2)
        time.sleep(1.0)  # inside the test's sleep now
        assert processes_under(str(folder / "basetemp"))  # its Redis and S3 run
        process.send_signal(signal.SIGINT)
        out, _ = process.communicate(timeout=60)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
    assert "KeyboardInterrupt" in out
    assert processes_under(module) == [] and processes_under(str(folder)) == []
