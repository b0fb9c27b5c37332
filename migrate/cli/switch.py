"""`migrate switch-config`: the configuration step."""

from __future__ import annotations

import dataclasses
from typing import Any

import click

from migrate.cli.base import cli, console, err_console, to_json


@cli.command("switch-config")
@click.argument("env_file", type=click.Path(dir_okay=False))
@click.option("--to", "target", type=click.Choice(["stateless"]), default="stateless",
              show_default=True, help="The configuration to switch to.")
@click.option("--redis", "redis_url", metavar="URL",
              help="The shared Redis ({redis}; default: the file's REDIS_URL).")
@click.option("--s3", "s3_url", metavar="URL",
              help="s3://BUCKET[/PREFIX], or an endpoint http(s)://HOST:PORT[/BUCKET].")
@click.option("--endpoint-url", metavar="URL",
              help="The S3 endpoint for an s3:// --s3 ({s3}; default: AWS S3).")
@click.option("--bucket", metavar="NAME", help="The bucket ({bucket}; wins over --s3's).")
@click.option("--database-url", metavar="URL",
              help="The shared database ({database_url}; default: the file's DATABASE_URL).")
@click.option("--set", "set_items", metavar="KEY=VALUE", multiple=True,
              help="Set an app key (repeatable; wins over [tool.migrate.switch]).")
@click.option("--drop", "drop_keys", metavar="KEY", multiple=True,
              help="Comment out an app key (repeatable).")
@click.option("--secret-key-from-env", is_flag=True,
              help="SECRET_KEY comes from the environment, not the file.")
@click.option("--dry-run", is_flag=True, help="Probe the stores, print the diff, write nothing.")
@click.option("--rollback", is_flag=True, help="Restore the most recent backup.")
@click.option("--json", "as_json", is_flag=True, help="Print the result as JSON.")
@click.pass_context
def switch_config_command(
    ctx: click.Context, env_file: str, target: str, redis_url: str | None, s3_url: str | None,
    endpoint_url: str | None, bucket: str | None, database_url: str | None,
    set_items: tuple[str, ...], drop_keys: tuple[str, ...], secret_key_from_env: bool,
    dry_run: bool, rollback: bool, as_json: bool,
) -> None:
    """Rewrite a .env file for the stateless app, after probing every store for real.

    The Flask ecosystem's own settings change when present in the file:

    \b
      SESSION_TYPE           filesystem/cachelib -> redis (+ REDIS_URL); SESSION_FILE_DIR,
                             SESSION_CACHELIB commented out   (Flask-Session)
      CACHE_TYPE             SimpleCache/FileSystemCache -> RedisCache + CACHE_REDIS_URL;
                             CACHE_DIR commented out          (Flask-Caching)
      RATELIMIT_STORAGE_URI  memory:// -> the Redis URL       (Flask-Limiter; or _URL)
      RQ_REDIS_URL           -> the Redis URL                 (RQ)
      CELERY_BROKER_URL, CELERY_RESULT_BACKEND  memory://, filesystem://, sqlite -> Redis
      UPLOAD_FOLDER          commented out: uploads now live in the bucket
      REDIS_URL, DATABASE_URL, SQLALCHEMY_DATABASE_URI   follow --redis / --database-url
      AWS_ENDPOINT_URL_S3    follows --endpoint-url           (boto3)

    Your app's own keys come from [tool.migrate.switch] in ./pyproject.toml and from --set /
    --drop (which win); values may use {redis}, {s3} (the endpoint), {bucket}, {prefix} and
    {database_url}:

    \b
      [tool.migrate.switch]
      set = { UPLOAD_BUCKET = "{bucket}", STORAGE_ENDPOINT = "{s3}" }
      drop = ["MEDIA_ROOT"]

    python-dotenv's parser reads the file: only changed bindings are rewritten; comments,
    export, quoting, multi-line values and CRLF stay byte for byte. Nothing is written unless
    Redis, S3 and the database each answer a round trip (exit 2, one line per failure). The
    write is atomic, through a symlink, owner and mode kept, with a timestamped backup beside
    the file; a read-only file is refused. Secrets are masked in all output.

    Example:

    \b
        migrate switch-config .env --to stateless --redis redis://10.0.0.5:6379/0 \\
            --s3 s3://photos/prod --endpoint-url http://10.0.0.6:9000 \\
            --set PHOTO_BUCKET={bucket} --drop MEDIA_ROOT --dry-run
        migrate switch-config .env --rollback
    """
    from migrate.runbook.journal import SUMMARY_KEY

    if rollback:
        _rollback(ctx, env_file, as_json)
        return
    from migrate import config
    from migrate.runbook.settings import mapping_from_table, parse_set_options

    tool = config.load()
    mapping = mapping_from_table(tool.section("switch"),
                                 f"[tool.migrate.switch] in {tool.source or 'pyproject.toml'}")
    result = _switch(ctx, env_file, as_json, target=target, redis_url=redis_url,
                     s3_url=s3_url, endpoint_url=endpoint_url, bucket=bucket,
                     database_url=database_url, mapping=mapping,
                     set_keys=parse_set_options(set_items), drop_keys=drop_keys,
                     secret_key_from_env=secret_key_from_env, dry_run=dry_run)
    ctx.meta[SUMMARY_KEY] = {"keys changed": len(result.changed),
                             "keys commented out": len(result.removed),
                             "stores probed": len(result.probes)}
    if as_json:
        data = dataclasses.asdict(result)
        data["ok"] = result.ok
        click.echo(to_json(data))
    else:
        _render(result, env_file, target)


def _rollback(ctx: click.Context, env_file: str, as_json: bool) -> None:
    from migrate.runbook.journal import SUMMARY_KEY
    from migrate.runbook.switch import rollback as rollback_config

    restored = rollback_config(env_file)
    ctx.meta[SUMMARY_KEY] = {"rolled back": 1}
    if as_json:
        click.echo(to_json(restored))
    else:
        console.print(f"[bold green]restored[/] {restored.path} from {restored.backup} "
                      f"({restored.backups_left} older backups left)", highlight=False)


def _switch(ctx: click.Context, env_file: str, as_json: bool, **options: Any) -> Any:
    """Run switch_config; a failed probe prints one line per store and exits 2."""
    from rich.markup import escape

    from migrate.runbook.journal import ERROR_KEY
    from migrate.runbook.switch import ProbesFailed, switch_config

    try:
        return switch_config(env_file, options.pop("target"), **options,
                             set_origin="--set", drop_origin="--drop")
    except ProbesFailed as exc:
        ctx.meta[ERROR_KEY] = str(exc)
        if as_json:
            click.echo(to_json(exc.result))
        for line in exc.lines:
            err_console.print(f"[bold red]error:[/] {escape(line)}", highlight=False)
        err_console.print(f"nothing was written to {env_file}", highlight=False)
        ctx.exit(2)


def _render(result: Any, env_file: str, target: str) -> None:
    from rich.markup import escape

    for probe in result.probes:
        console.print(f"[green]✓[/] {probe.target:<9} {escape(probe.url)}: "
                      f"{escape(probe.detail)} ({probe.seconds * 1000:.0f} ms)",
                      highlight=False)
    if result.diff:
        from rich.syntax import Syntax

        console.print(Syntax(result.diff, "diff", theme="ansi_dark", background_color="default"))
    for note in result.notes:
        console.print(f"[yellow]note:[/] {escape(note)}", highlight=False)
    where = f"{env_file} (-> {result.written_to})" if result.written_to else env_file
    if result.dry_run:
        console.print(f"dry run: {len(result.changed) + len(result.removed)} changes, nothing "
                      f"written to {where}", highlight=False)
    elif result.written:
        console.print(f"[bold green]switched[/] {escape(where)} to {target}: set "
                      f"{', '.join(result.changed) or 'nothing'}; commented out "
                      f"{', '.join(result.removed) or 'nothing'}; backup {result.backup} "
                      f"(undo: migrate switch-config {env_file} --rollback)", highlight=False)
    else:
        console.print(f"{where} is already configured for {target}: nothing written",
                      highlight=False)
