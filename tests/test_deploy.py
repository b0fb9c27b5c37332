"""`migrate deploy`: the files a stateless app runs on many hosts with, validated offline.

Kubernetes manifests against the API schemas (kubernetes-validate, strict: an unknown field
fails), haproxy.cfg with `haproxy -c`, the nginx files with `nginx -t`; for the after-shop
(this repo's [tool.migrate.deploy]) and for tests/apps/gallery (its own pyproject.toml).
"""

from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import kubernetes_validate
import pytest
import yaml
from click.testing import CliRunner

from migrate import config
from migrate.cli import cli
from migrate.deploy import DeploySpec, load_spec, render
from migrate.deploy.spec import check
from migrate.errors import UsageError

ROOT = Path(__file__).resolve().parent.parent
GALLERY = ROOT / "tests" / "apps" / "gallery"
K8S_VERSIONS = ("1.27.0", kubernetes_validate.latest_version())
needs_haproxy = pytest.mark.skipif(shutil.which("haproxy") is None,
                                   reason="haproxy not installed (.ci/run installs it)")
needs_nginx = pytest.mark.skipif(shutil.which("nginx") is None,
                                 reason="nginx not installed (.ci/run installs nginx-light)")


def shop_spec(**overrides) -> DeploySpec:
    return load_spec(config.load(ROOT), **overrides)


def documents(folder: Path) -> dict[str, dict]:
    """kind/name -> resource, for every YAML file in ``folder``."""
    found = {}
    for path in sorted(folder.glob("*.yaml")):
        for doc in yaml.safe_load_all(path.read_text(encoding="utf-8")):
            found[f"{doc['kind']}/{doc['metadata']['name']}"] = doc
    return found


def validate_all(folder: Path) -> list[str]:
    checked = []
    for key, doc in documents(folder).items():
        for version in K8S_VERSIONS:
            kubernetes_validate.validate(doc, version, strict=True)  # raises when invalid
        checked.append(key)
    return checked


# --- Kubernetes --------------------------------------------------------------------------------


def test_the_after_shops_manifests_validate_and_say_what_the_issue_asks(tmp_path: Path) -> None:
    result = render("kubernetes", shop_spec(), tmp_path)
    assert {Path(f.path).name for f in result.files} == {
        "configmap.yaml", "deployment.yaml", "service.yaml", "pdb.yaml", "hpa.yaml",
        "worker.yaml"}
    assert sorted(validate_all(tmp_path)) == [
        "ConfigMap/shop-config", "Deployment/shop", "Deployment/shop-worker",
        "HorizontalPodAutoscaler/shop", "PodDisruptionBudget/shop", "Service/shop"]
    docs = documents(tmp_path)

    web = docs["Deployment/shop"]["spec"]
    pod = web["template"]["spec"]
    (container,) = pod["containers"]
    assert web["replicas"] >= 2
    assert "affinity" not in pod  # any pod serves any request
    assert container["readinessProbe"]["httpGet"]["path"] == "/readyz"
    assert container["livenessProbe"]["httpGet"]["path"] == "/healthz"
    assert container["lifecycle"]["preStop"]["exec"]["command"] == ["sleep", "10"]
    command = container["command"]
    assert command[0] == "gunicorn" and command[-1] == "sample_stateless_app:create_app()"
    assert "--no-control-socket" in command
    # A live-updates stream holds a thread: the shop's table asks for gthread with 8 threads.
    assert command[command.index("--worker-class") + 1] == "gthread"
    assert command[command.index("--threads") + 1] == "8"
    graceful = int(command[command.index("--graceful-timeout") + 1])
    # The drain, then gunicorn's graceful shutdown, both inside the grace period.
    assert pod["terminationGracePeriodSeconds"] > 10 + graceful
    assert web["strategy"]["rollingUpdate"]["maxUnavailable"] == 0

    service = docs["Service/shop"]["spec"]
    assert service.get("sessionAffinity", "None") == "None"
    assert service["selector"] == web["selector"]["matchLabels"]
    assert docs["PodDisruptionBudget/shop"]["spec"]["selector"] == web["selector"]
    hpa = docs["HorizontalPodAutoscaler/shop"]["spec"]
    assert hpa["scaleTargetRef"]["name"] == "shop" and hpa["minReplicas"] == web["replicas"]
    assert hpa["maxReplicas"] > hpa["minReplicas"]

    worker = docs["Deployment/shop-worker"]["spec"]["template"]["spec"]["containers"][0]
    assert worker["command"] == ["python", "-m", "sample_stateless_app.worker"]
    for one in (container, worker):  # config from the Secret (by key) and the ConfigMap
        refs = {e["name"]: e["valueFrom"]["secretKeyRef"] for e in one["env"]
                if "secretKeyRef" in e.get("valueFrom", {})}
        assert set(refs) == {"SECRET_KEY", "DATABASE_URL", "REDIS_URL", "AWS_ACCESS_KEY_ID",
                             "AWS_SECRET_ACCESS_KEY"}
        assert {r["name"] for r in refs.values()} == {"shop-env"}
        assert one["envFrom"] == [{"configMapRef": {"name": "shop-config"}}]
        assert all("value" not in e for e in one["env"])  # no literal value at all
    assert docs["ConfigMap/shop-config"]["data"] == {"S3_BUCKET": "shop"}
    assert not any(doc["kind"] == "Secret" for doc in docs.values())


def test_the_validator_would_catch_a_broken_manifest(tmp_path: Path) -> None:
    render("kubernetes", shop_spec(), tmp_path)
    deployment = documents(tmp_path)["Deployment/shop"]
    deployment["spec"]["template"]["spec"]["containers"][0]["readinessProbe"]["httpGets"] = {}
    with pytest.raises(kubernetes_validate.ValidationError):
        kubernetes_validate.validate(deployment, K8S_VERSIONS[-1], strict=True)


def test_the_gallery_deploys_through_its_own_table(tmp_path: Path) -> None:
    spec = load_spec(config.load(GALLERY))
    assert (spec.name, spec.app, spec.worker) == ("gallery", "gallery:create_app()", [])
    render("kubernetes", spec, tmp_path / "k8s")
    assert sorted(validate_all(tmp_path / "k8s")) == [
        "ConfigMap/gallery-config", "Deployment/gallery", "HorizontalPodAutoscaler/gallery",
        "PodDisruptionBudget/gallery", "Service/gallery"]  # no worker: none rendered
    docs = documents(tmp_path / "k8s")
    container = docs["Deployment/gallery"]["spec"]["template"]["spec"]["containers"][0]
    assert container["readinessProbe"]["httpGet"]["path"] == "/healthz"  # it has no /readyz
    assert "--worker-class" not in container["command"]  # gunicorn's own default (sync)
    assert docs["ConfigMap/gallery-config"]["data"]["SESSION_TYPE"] == "redis"
    haproxy = render("haproxy", spec, tmp_path / "haproxy").files[0].content
    assert "server gallery-2 10.0.0.12:8000" in haproxy
    nginx = render("nginx", spec, tmp_path / "nginx")
    assert [Path(f.path).name for f in nginx.files] == ["gallery.conf", "nginx.conf"]


def test_options_win_over_the_table(tmp_path: Path) -> None:
    spec = shop_spec(replicas=4, image="example.org/shop:2", app="other:make()", name="other")
    render("kubernetes", spec, tmp_path)
    docs = documents(tmp_path)
    web = docs["Deployment/other"]["spec"]
    assert web["replicas"] == 4 and docs["HorizontalPodAutoscaler/other"]["spec"][
        "maxReplicas"] == 12
    assert web["template"]["spec"]["containers"][0]["image"] == "example.org/shop:2"
    assert web["template"]["spec"]["containers"][0]["command"][-1] == "other:make()"


# --- refusals ----------------------------------------------------------------------------------


@pytest.mark.parametrize("table, message", [
    ({}, "no app to deploy: pass --app"),
    ({"app": "a:b()", "replicas": 1}, "replicas must be from 2"),
    ({"app": "a:b()", "config": {"API_TOKEN": "x"}}, "config holds API_TOKEN, a secret"),
    ({"app": "a:b()", "config": {"CACHE_URL": "redis://:hunter2@cache:6379/0"}},
     "config holds CACHE_URL, a secret"),
    ({"app": "a:b()", "config": {"X": 1}, "secret_keys": ["X"]}, "in both config and"),
    ({"app": "a:b()", "servers": ["10.0.0.1:80\n    server evil 1.2.3.4:80"]}, "not HOST:PORT"),
    ({"app": "a:b()", "servers": ["10.0.0.1"]}, "not HOST:PORT"),
    ({"app": "a:b()", "servers": ["10.0.0.1:0"]}, "no port from 1 to 65535"),
    ({"app": "a:b(); rm -rf /"}, "is not a gunicorn app spec"),
    ({"app": "a:b()", "readiness": "/readyz;"}, "is not a URL path"),
    ({"app": "a:b()", "name": "Shop_1"}, "is not a DNS label"),
    ({"app": "a:b()", "listen": "80;"}, "no port"),
    ({"app": "a:b()", "replica": 3}, "unknown key 'replica'"),
    ({"app": "a:b()", "worker": "python -m x\nrm"}, "control character"),
])
def test_a_value_unfit_for_a_file_is_refused_naming_it(tmp_path: Path, table: dict,
                                                       message: str) -> None:
    tool = config.ToolConfig(tmp_path, {"deploy": table}, tmp_path / "pyproject.toml")
    with pytest.raises(UsageError, match=message.replace("(", r"\(").replace(")", r"\)")):
        load_spec(tool)


def test_kubernetes_needs_an_image_and_balancers_need_servers(tmp_path: Path) -> None:
    spec = DeploySpec(name="app", app="app:create_app()")
    check(spec)
    with pytest.raises(UsageError, match="no image for the pods: pass --image"):
        render("kubernetes", spec, tmp_path)
    for target in ("haproxy", "nginx"):
        with pytest.raises(UsageError, match="no servers to balance: pass --servers"):
            render(target, spec, tmp_path)
    assert list(tmp_path.iterdir()) == []


# --- the balancers -----------------------------------------------------------------------------


def balancer_spec(**overrides) -> DeploySpec:
    return shop_spec(servers=("127.0.0.1:8001,127.0.0.1:8002", "[::1]:8003"), **overrides)


def test_haproxy_checks_health_and_is_not_sticky(tmp_path: Path) -> None:
    text = render("haproxy", balancer_spec(), tmp_path).files[0].content
    assert "option httpchk GET /readyz" in text and "default-server check" in text
    assert "balance roundrobin" in text
    for line in text.splitlines():  # directives only (the comments name what is left out)
        if not line.lstrip().startswith("#"):
            assert not any(word in line for word in ("cookie", "stick", "balance source"))
    assert "server shop-3 [::1]:8003" in text and "option redispatch" in text


def test_nginx_checks_health_and_is_not_sticky(tmp_path: Path) -> None:
    files = render("nginx", balancer_spec(), tmp_path).files
    site = files[0].content
    assert "server 127.0.0.1:8001 max_fails=3 fail_timeout=10s;" in site
    assert "proxy_next_upstream error timeout" in site
    directives = [line for line in site.splitlines() if not line.lstrip().startswith("#")]
    assert not any(word in line for line in directives
                   for word in ("ip_hash", "hash ", "sticky"))


@needs_haproxy
def test_haproxy_accepts_the_rendered_file(tmp_path: Path) -> None:
    for spec in (balancer_spec(), load_spec(config.load(GALLERY))):
        render("haproxy", spec, tmp_path / spec.name)
        cfg = tmp_path / spec.name / "haproxy.cfg"
        run = subprocess.run(["haproxy", "-c", "-f", str(cfg)], capture_output=True, text=True,
                             timeout=30)
        assert run.returncode == 0, run.stdout + run.stderr


@needs_nginx
def test_nginx_accepts_the_rendered_files(tmp_path: Path) -> None:
    for spec in (balancer_spec(listen="127.0.0.1:8080"), load_spec(config.load(GALLERY))):
        folder = tmp_path / spec.name
        render("nginx", spec, folder)
        # -p: its temporary folders under the test's own; -e: no system error log needed.
        (folder / "prefix").mkdir()
        run = subprocess.run(["nginx", "-t", "-p", str(folder / "prefix"), "-e", "stderr",
                              "-c", str(folder / "nginx.conf")],
                             capture_output=True, text=True, timeout=30)
        assert run.returncode == 0, run.stdout + run.stderr
        assert "test is successful" in run.stderr


# --- the command -------------------------------------------------------------------------------


def test_cli_writes_once_then_reports_unchanged(tmp_path: Path,
                                                monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(ROOT)
    runner = CliRunner()
    out = tmp_path / "k8s"
    first = runner.invoke(cli, ["deploy", "kubernetes", "--out", str(out), "--json"])
    assert first.exit_code == 0, first.output
    shown = json.loads(first.output)
    assert shown["secret"] == "shop-env" and "SECRET_KEY" in shown["secret_keys"]
    assert {f["status"] for f in shown["files"]} == {"new"}
    again = runner.invoke(cli, ["deploy", "kubernetes", "--out", str(out)])
    assert again.exit_code == 0, again.output
    assert "wrote 0 of 6 files" in again.output and "kubectl apply -f" in again.output
    changed = runner.invoke(cli, ["deploy", "kubernetes", "--out", str(out), "--json",
                                  "--replicas", "3"])
    statuses = {Path(f["path"]).name: f["status"] for f in json.loads(changed.output)["files"]}
    assert statuses["deployment.yaml"] == "changed" and statuses["service.yaml"] == "unchanged"


def test_cli_dry_run_shows_and_writes_nothing(tmp_path: Path,
                                              monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(GALLERY)
    out = tmp_path / "haproxy"
    run = CliRunner().invoke(cli, ["deploy", "haproxy", "--out", str(out), "--dry-run",
                                   "--servers", "127.0.0.1:9001", "--servers", "127.0.0.1:9002"])
    assert run.exit_code == 0, run.output
    assert "server gallery-2 127.0.0.1:9002" in run.output and "would write 1 of 1" in run.output
    assert not out.exists()


def test_cli_errors_are_one_line_with_exit_2(tmp_path: Path,
                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)  # no pyproject.toml here
    run = CliRunner().invoke(cli, ["deploy", "nginx", "--out", str(tmp_path / "n")])
    assert run.exit_code == 2
    assert run.output.strip().splitlines() == [
        "error: no app to deploy: pass --app module:create_app() or set app in "
        "[tool.migrate.deploy]"]
    run = CliRunner().invoke(cli, ["deploy", "nginx", "--out", str(tmp_path / "n"),
                                   "--app", "myapp:app"])
    assert run.exit_code == 2 and "no servers to balance" in run.output
    monkeypatch.chdir(ROOT)  # a bad option is named as the option, not as the table's key
    run = CliRunner().invoke(cli, ["deploy", "kubernetes", "--out", str(tmp_path / "k"),
                                   "--replicas", "1"])
    assert run.exit_code == 2 and run.output.startswith(
        "error: --replicas: replicas must be from 2 to 1000, not 1")
    assert not (tmp_path / "k").exists()
