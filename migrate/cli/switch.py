"""`migrate switch-config`: the configuration step."""

from __future__ import annotations

import dataclasses

import click

from migrate.cli.base import cli, console, err_console, to_json

# --- switch-config and the runbook (steps, status) -------------------------------------------


@cli.command("switch-config")
@click.argument("env_file", type=click.Path(dir_okay=False))
@click.option("--to", "target", type=click.Choice(["stateless"]), default="stateless",
              show_default=True, help="The configuration to switch to.")
@click.option("--redis", "redis_url", metavar="URL", help="The shared Redis (REDIS_URL).")
@click.option("--s3", "s3_url", metavar="URL",
              help="An S3 endpoint http(s)://HOST:PORT (S3_ENDPOINT_URL) or s3://BUCKET.")
@click.option("--bucket", metavar="NAME", help="The bucket (S3_BUCKET).")
@click.option("--database-url", metavar="URL", help="The shared database (kept when set).")
@click.option("--secret-key-from-env", is_flag=True,
              help="SECRET_KEY comes from the environment, not the file.")
@click.option("--dry-run", is_flag=True, help="Probe the stores, print the diff, write nothing.")
@click.option("--rollback", is_flag=True, help="Restore the most recent backup.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_context
def switch_config_command(
    ctx: click.Context, env_file: str, target: str, redis_url: str | None, s3_url: str | None,
    bucket: str | None, database_url: str | None, secret_key_from_env: bool, dry_run: bool,
    rollback: bool, as_json: bool,
) -> None:
    """Rewrite a .env file for the stateless app, after probing every store for real.

    Sets SESSION_TYPE=redis, REDIS_URL, S3_ENDPOINT_URL, S3_BUCKET and DATABASE_URL, comments
    out before-only keys with a `# migrate: was ...` line, keeps comments and order. Writes
    nothing unless Redis, S3 and the database each answer a round trip (exit 2, one line per
    failure). Keeps a timestamped backup beside the file; secrets are masked in all output.

    Example:

    \b
        migrate switch-config .env --to stateless --redis redis://10.0.0.5:6379/0 \\
            --s3 http://10.0.0.6:9000 --bucket shop --dry-run
        migrate switch-config .env --rollback
    """
    from rich.markup import escape

    from migrate.runbook.journal import ERROR_KEY, SUMMARY_KEY
    from migrate.runbook.switch import ProbesFailed, switch_config
    from migrate.runbook.switch import rollback as rollback_config

    if rollback:
        restored = rollback_config(env_file)
        ctx.meta[SUMMARY_KEY] = {"rolled back": 1}
        if as_json:
            click.echo(to_json(restored))
        else:
            console.print(f"[bold green]restored[/] {restored.path} from {restored.backup} "
                          f"({restored.backups_left} older backups left)", highlight=False)
        return
    try:
        result = switch_config(env_file, target, redis_url=redis_url, s3_url=s3_url,
                               bucket=bucket, database_url=database_url,
                               secret_key_from_env=secret_key_from_env, dry_run=dry_run)
    except ProbesFailed as exc:
        ctx.meta[ERROR_KEY] = str(exc)
        if as_json:
            click.echo(to_json(exc.result))
        for line in exc.lines:
            err_console.print(f"[bold red]error:[/] {escape(line)}", highlight=False)
        err_console.print(f"nothing was written to {env_file}", highlight=False)
        ctx.exit(2)
    ctx.meta[SUMMARY_KEY] = {"keys changed": len(result.changed),
                             "keys commented out": len(result.removed),
                             "stores probed": len(result.probes)}
    if as_json:
        data = dataclasses.asdict(result)
        data["ok"] = result.ok
        click.echo(to_json(data))
        return
    for probe in result.probes:
        console.print(f"[green]✓[/] {probe.target:<9} {probe.url}: {probe.detail} "
                      f"({probe.seconds * 1000:.0f} ms)", highlight=False, markup=True)
    if result.diff:
        from rich.syntax import Syntax

        console.print(Syntax(result.diff, "diff", theme="ansi_dark", background_color="default"))
    if dry_run:
        console.print(f"dry run: {len(result.changed) + len(result.removed)} changes, nothing "
                      f"written to {env_file}", highlight=False)
    elif result.written:
        console.print(f"[bold green]switched[/] {env_file} to {target}: set "
                      f"{', '.join(result.changed) or 'nothing'}; commented out "
                      f"{', '.join(result.removed) or 'nothing'}; backup {result.backup} "
                      f"(undo: migrate switch-config {env_file} --rollback)", highlight=False)
    else:
        console.print(f"{env_file} is already configured for {target}: nothing written",
                      highlight=False)
