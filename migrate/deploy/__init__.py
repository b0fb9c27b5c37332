"""Deploy files for a stateless app on many hosts: Kubernetes manifests, HAProxy, nginx.

``load_spec`` reads ``[tool.migrate.deploy]`` (the app, its image, its worker, the names of the
keys its Secret holds, plain settings for a ConfigMap, the instances a balancer fronts);
``render`` writes one target's files and says what the operator does next. Nothing here
imports the demo: the sample shop is deployed through the same table as any app.
"""

from migrate.deploy.render import TARGETS, DeployResult, RenderedFile, render
from migrate.deploy.spec import DeploySpec, load_spec

__all__ = ["TARGETS", "DeployResult", "DeploySpec", "RenderedFile", "load_spec", "render"]
