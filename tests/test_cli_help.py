"""Every command has help text with an example (sqlite-utils style)."""

import click
import pytest
from click.testing import CliRunner

from migrate.cli import cli


def _commands(group: click.Group, prefix: tuple[str, ...] = ()):
    ctx = click.Context(group)  # list/get: commands load lazily, as `migrate --help` sees them
    for name in group.list_commands(ctx):
        cmd = group.get_command(ctx, name)
        yield prefix + (name,), cmd
        if isinstance(cmd, click.Group):
            yield from _commands(cmd, prefix + (name,))


ALL = list(_commands(cli))


def test_there_are_commands():
    assert ALL, "the CLI registers no commands"


@pytest.mark.parametrize("path,cmd", ALL, ids=[" ".join(p) for p, _ in ALL])
def test_command_has_help_with_example(path, cmd):
    result = CliRunner().invoke(cli, [*path, "--help"])
    assert result.exit_code == 0, result.output
    assert cmd.help, f"`migrate {' '.join(path)}` has no help text"
    assert "Example" in cmd.help, f"`migrate {' '.join(path)}` help has no example"
