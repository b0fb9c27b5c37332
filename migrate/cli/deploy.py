"""`migrate deploy kubernetes|haproxy|nginx`: the files that run the app on many hosts."""

from __future__ import annotations

import click

from migrate.cli.base import cli, console, to_json


@cli.command("deploy")
@click.argument("target", type=click.Choice(["kubernetes", "haproxy", "nginx"]))
@click.option("--out", required=True, type=click.Path(file_okay=False), metavar="DIR",
              help="Write the files into this folder (made if missing).")
@click.option("--app", metavar="SPEC",
              help="The gunicorn app spec, e.g. myapp:create_app() ([tool.migrate.deploy] app).")
@click.option("--name", metavar="NAME", help="Resource and backend name (default: the app's "
                                             "module, or [tool.migrate.deploy] name).")
@click.option("--replicas", type=int, metavar="N", help="Web pods, at least 2 (default 2).")
@click.option("--image", metavar="IMG", help="The container image (Kubernetes).")
@click.option("--servers", multiple=True, metavar="HOST:PORT",
              help="An instance to balance (HAProxy, nginx); repeatable or comma-separated.")
@click.option("--listen", metavar="[HOST:]PORT", help="Where the balancer listens (default 80).")
@click.option("--dry-run", is_flag=True, help="Show the files; write nothing.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
def deploy_command(target: str, out: str, app: str | None, name: str | None,
                   replicas: int | None, image: str | None, servers: tuple[str, ...],
                   listen: str | None, dry_run: bool, as_json: bool) -> None:
    """Render the files that deploy a stateless app on many hosts.

    \b
      kubernetes  Deployment (>= 2 replicas, readiness /readyz, liveness /healthz, preStop
                  drain), Service (no sessionAffinity), PodDisruptionBudget, HPA, the
                  worker Deployment, a ConfigMap; the pods read a Secret you create
      haproxy     haproxy.cfg: round robin, health checks, an admin socket to drain
      nginx       NAME.conf (conf.d) and nginx.conf: round robin, passive checks

    What to deploy comes from [tool.migrate.deploy] in ./pyproject.toml (options win):

    \b
      [tool.migrate.deploy]
      app = "myapp:create_app()"
      image = "registry.example.com/myapp:1.4.2"
      worker = "python -m myapp.worker"        # omit: no worker Deployment
      secret_keys = ["SECRET_KEY", "DATABASE_URL", "REDIS_URL"]   # names only
      config = { S3_BUCKET = "media" }          # plain settings: the ConfigMap
      servers = ["10.0.0.11:8000", "10.0.0.12:8000"]   # what a balancer fronts

    A secret value never goes in a file: a config key or value that looks like one is
    refused. Re-running rewrites only the files that changed.

    Example:

    \b
        migrate deploy kubernetes --out deploy/k8s --image registry.example.com/shop:1.0
        migrate deploy haproxy --out deploy/haproxy --servers 10.0.0.11:8000,10.0.0.12:8000
    """
    from migrate import config
    from migrate.deploy import load_spec, render

    spec = load_spec(config.load(), app=app, name=name, replicas=replicas, image=image,
                     servers=servers or None, listen=listen)
    result = render(target, spec, out, dry_run=dry_run)
    if as_json:
        click.echo(to_json(result))
        return
    verb = "would write" if dry_run else "wrote"
    for file in result.files:
        console.print(f"  {file.status:<9} {file.path}  ({file.bytes:,} bytes)", highlight=False,
                      markup=False)
        if dry_run:
            console.print(file.content, highlight=False, markup=False)
    changed = sum(f.status != "unchanged" for f in result.files)
    console.print(f"[bold green]{target}[/]: {verb} {changed} of {len(result.files)} files "
                  f"for {result.name} ({result.app})", highlight=False)
    if result.secret:
        console.print(f"the pods read the Secret {result.secret} (keys: "
                      f"{', '.join(result.secret_keys)}); its values are in no file",
                      highlight=False, markup=False)
    for step in result.next_steps:
        console.print(f"  next: {step}", highlight=False, markup=False)
