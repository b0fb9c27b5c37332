"""Kubernetes manifests for a stateless app: built as data, written as YAML (PyYAML).

What each resource says, and why:

- the web Deployment runs ``replicas`` pods (at least 2) with no affinity of any kind: any pod
  may serve any request. Readiness on the app's ``/readyz`` (its stores answer), liveness on
  ``/healthz`` (the process answers). On termination a ``preStop`` sleep keeps the pod serving
  while the Service and the ingress forget it, then gunicorn's graceful shutdown lets in-flight
  requests finish; ``terminationGracePeriodSeconds`` covers both. A read-only root filesystem
  (``/tmp`` an emptyDir) makes "nothing on local disk" a rule the cluster enforces;
- the Service balances with no ``sessionAffinity``;
- a PodDisruptionBudget keeps all but one pod through node drains; an HPA scales on CPU;
- the worker Deployment runs the background jobs (when the app has a worker);
- configuration comes from a ConfigMap (plain settings) and a Secret whose *keys* the pods
  reference: the Secret itself is made by the operator, its values never in these files.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

import yaml

from migrate.deploy.spec import DeploySpec
from migrate.errors import UsageError

HEADER = "# Rendered by `migrate deploy kubernetes` from [tool.migrate.deploy]; apply with\n" \
         "# `kubectl apply -f DIR` once the Secret {secret} exists (see deployment.yaml).\n"


def manifests(spec: DeploySpec) -> list[tuple[str, str, dict[str, Any]]]:
    """(file name, comment, resource) for each manifest, in the order to apply them."""
    if not spec.image:
        raise UsageError("no image for the pods: pass --image REGISTRY/NAME:TAG or set image "
                         "in [tool.migrate.deploy]")
    secret_help = (
        f"The Secret {spec.secret_name} is not in these files, on purpose. Create it from your "
        "secret store, e.g.\nfrom a file kept out of version control that holds the keys\n  "
        + " ".join(spec.secret_keys)
        + f"\nwith:\n  {secret_command(spec)}")
    out = [
        ("configmap.yaml", "Plain settings only: secrets go in the Secret.", config_map(spec)),
        ("deployment.yaml", secret_help, web_deployment(spec)),
        ("service.yaml", "Round robin over ready pods: no sessionAffinity.", service(spec)),
        ("pdb.yaml", "Voluntary disruptions (node drains) take one pod at a time.",
         disruption_budget(spec)),
        ("hpa.yaml", "Scales the web pods on CPU; minReplicas is the Deployment's replicas.",
         autoscaler(spec)),
    ]
    if spec.worker:
        out.append(("worker.yaml", "The background worker: jobs, not requests.",
                    worker_deployment(spec)))
    return out


def secret_command(spec: DeploySpec) -> str:
    """How the operator makes the Secret: from a file of KEY=value lines, not the shell."""
    return f"kubectl create secret generic {spec.secret_name} --from-env-file={spec.name}.env"


def render(spec: DeploySpec) -> dict[str, str]:
    """File name -> YAML text for every manifest."""
    files = {}
    for name, comment, resource in manifests(spec):
        lines = "".join(f"# {line}\n" if line else "#\n" for line in comment.splitlines())
        files[name] = (HEADER.format(secret=spec.secret_name) + lines
                       + yaml.safe_dump(resource, sort_keys=False, default_flow_style=False))
    return files


def labels(spec: DeploySpec, component: str) -> dict[str, str]:
    return {"app.kubernetes.io/name": spec.name, "app.kubernetes.io/component": component}


def _meta(spec: DeploySpec, name: str, component: str) -> dict[str, Any]:
    return {"name": name, "labels": {**labels(spec, component),
                                     "app.kubernetes.io/managed-by": "migrate"}}


def config_map(spec: DeploySpec) -> dict[str, Any]:
    return {"apiVersion": "v1", "kind": "ConfigMap",
            "metadata": _meta(spec, f"{spec.name}-config", "config"),
            "data": dict(spec.config)}


def _env(spec: DeploySpec) -> dict[str, Any]:
    """The container's environment: the pod's name, the Secret's keys, the ConfigMap."""
    env: list[dict[str, Any]] = [
        {"name": "INSTANCE_NAME", "valueFrom": {"fieldRef": {"fieldPath": "metadata.name"}}}]
    env += [{"name": key, "valueFrom": {"secretKeyRef": {"name": spec.secret_name, "key": key}}}
            for key in spec.secret_keys]
    return {"env": env, "envFrom": [{"configMapRef": {"name": f"{spec.name}-config"}}]}


def _hardened() -> dict[str, Any]:
    return {"allowPrivilegeEscalation": False, "readOnlyRootFilesystem": True,
            "capabilities": {"drop": ["ALL"]}}


def _pod_security() -> dict[str, Any]:
    return {"runAsNonRoot": True, "runAsUser": 10001, "runAsGroup": 10001,
            "seccompProfile": {"type": "RuntimeDefault"}}


def gunicorn_args(spec: DeploySpec) -> list[str]:
    """gunicorn in a pod: its control socket off (gunicorn 27+), graceful shutdown bounded;
    threads (gthread) where a request may hold a worker, e.g. a Server-Sent Events stream."""
    threads = (["--worker-class", "gthread", "--threads", str(spec.threads)]
               if spec.threads > 1 else [])
    return ["gunicorn", "--bind", f"0.0.0.0:{spec.port}", "--workers", str(spec.workers),
            *threads, "--timeout", str(spec.request_timeout),
            "--graceful-timeout", str(spec.request_timeout),
            "--no-control-socket", "--access-logfile", "-", spec.app]


def _probe(spec: DeploySpec, path: str, period: int, failures: int) -> dict[str, Any]:
    return {"httpGet": {"path": path, "port": "http"}, "periodSeconds": period,
            "timeoutSeconds": 3, "failureThreshold": failures}


def _pod_template(spec: DeploySpec, component: str, container: dict[str, Any],
                  grace: int) -> dict[str, Any]:
    checksum = hashlib.sha256(json.dumps(spec.config, sort_keys=True).encode()).hexdigest()
    return {
        # A changed ConfigMap rolls the pods (they read it only at start).
        "metadata": {"labels": labels(spec, component),
                     "annotations": {"migrate/config-sha256": checksum}},
        "spec": {
            "terminationGracePeriodSeconds": grace,
            "securityContext": _pod_security(),
            # Spread over nodes when it can; never pinned: any pod serves any request.
            "topologySpreadConstraints": [{
                "maxSkew": 1, "topologyKey": "kubernetes.io/hostname",
                "whenUnsatisfiable": "ScheduleAnyway",
                "labelSelector": {"matchLabels": labels(spec, component)}}],
            "containers": [container],
            "volumes": [{"name": "tmp", "emptyDir": {"sizeLimit": "64Mi"}}],
        },
    }


def web_deployment(spec: DeploySpec) -> dict[str, Any]:
    container = {
        "name": "web", "image": spec.image, "command": gunicorn_args(spec),
        "ports": [{"name": "http", "containerPort": spec.port, "protocol": "TCP"}],
        **_env(spec),
        "startupProbe": _probe(spec, spec.liveness, 2, 30),
        "readinessProbe": _probe(spec, spec.readiness, 5, 2),
        "livenessProbe": _probe(spec, spec.liveness, 10, 3),
        # Keep serving while the endpoints controller and the balancers drop this pod; only
        # then does SIGTERM start gunicorn's graceful shutdown.
        "lifecycle": {"preStop": {"exec": {"command": ["sleep", str(spec.drain_seconds)]}}},
        "resources": {"requests": {"cpu": spec.cpu_request, "memory": spec.memory_request},
                      "limits": {"memory": spec.memory_limit}},
        "securityContext": _hardened(),
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": _meta(spec, spec.name, "web"),
        "spec": {
            "replicas": spec.replicas,
            "selector": {"matchLabels": labels(spec, "web")},
            # A new pod is ready before an old one goes: capacity never drops in a roll.
            "strategy": {"type": "RollingUpdate",
                         "rollingUpdate": {"maxUnavailable": 0, "maxSurge": 1}},
            "template": _pod_template(spec, "web", container, spec.grace_seconds),
        },
    }


def worker_deployment(spec: DeploySpec) -> dict[str, Any]:
    container = {
        "name": "worker", "image": spec.image, "command": list(spec.worker), **_env(spec),
        "resources": {"requests": {"cpu": spec.cpu_request, "memory": spec.memory_request},
                      "limits": {"memory": spec.memory_limit}},
        "securityContext": _hardened(),
        "volumeMounts": [{"name": "tmp", "mountPath": "/tmp"}],
    }
    name = f"{spec.name}-worker"
    return {
        "apiVersion": "apps/v1", "kind": "Deployment", "metadata": _meta(spec, name, "worker"),
        "spec": {
            "replicas": spec.worker_replicas,
            "selector": {"matchLabels": labels(spec, "worker")},
            "template": _pod_template(spec, "worker", container, spec.worker_grace_seconds),
        },
    }


def service(spec: DeploySpec) -> dict[str, Any]:
    return {
        "apiVersion": "v1", "kind": "Service", "metadata": _meta(spec, spec.name, "web"),
        "spec": {
            "type": "ClusterIP",
            "selector": labels(spec, "web"),
            "ports": [{"name": "http", "port": 80, "targetPort": "http", "protocol": "TCP"}],
            "sessionAffinity": "None",
        },
    }


def disruption_budget(spec: DeploySpec) -> dict[str, Any]:
    return {
        "apiVersion": "policy/v1", "kind": "PodDisruptionBudget",
        "metadata": _meta(spec, spec.name, "web"),
        "spec": {"maxUnavailable": 1, "selector": {"matchLabels": labels(spec, "web")}},
    }


def autoscaler(spec: DeploySpec) -> dict[str, Any]:
    return {
        "apiVersion": "autoscaling/v2", "kind": "HorizontalPodAutoscaler",
        "metadata": _meta(spec, spec.name, "web"),
        "spec": {
            "scaleTargetRef": {"apiVersion": "apps/v1", "kind": "Deployment", "name": spec.name},
            "minReplicas": spec.replicas,
            "maxReplicas": spec.hpa_max,
            "metrics": [{"type": "Resource", "resource": {
                "name": "cpu",
                "target": {"type": "Utilization", "averageUtilization": spec.cpu_target}}}],
            "behavior": {"scaleDown": {"stabilizationWindowSeconds": 300}},
        },
    }
