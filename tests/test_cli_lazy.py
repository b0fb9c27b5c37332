"""The CLI imports only the command that runs, and `migrate --help` still lists every command."""

import subprocess
import sys

from click.testing import CliRunner

from migrate.cli import cli
from migrate.cli.base import COMMANDS, VERIFY_COMMANDS


def _fresh(*argv: str) -> tuple[str, set[str]]:
    """`migrate ARGV` in a fresh interpreter: its output and the command modules it imported."""
    code = ("import sys\nfrom migrate.cli import cli\n"
            f"try:\n    cli({list(argv)!r}, prog_name='migrate', terminal_width=80)\n"
            "except SystemExit:\n    pass\n"
            "print('MODULES', *(m for m in sys.modules if m.startswith('migrate.cli.')))")
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True,
                         check=True, timeout=60).stdout
    output, _, modules = out.rpartition("MODULES")
    return output, set(modules.split()) - {"migrate.cli.base"}


def test_a_command_imports_only_its_own_module():
    assert _fresh("scan", "--help")[1] == {"migrate.cli.scan"}
    assert _fresh("verify", "files", "--help")[1] == {"migrate.cli.files"}
    assert _fresh("--help")[1] == set()


def test_help_lists_every_command_as_if_all_were_loaded():
    """A command added to a module but not to the table (or a short help that drifted) fails."""
    lazy_help, lazy_verify = _fresh("--help")[0], _fresh("verify", "--help")[0]
    verify = cli.commands["verify"]
    cli.load_all()
    verify.load_all()
    assert set(cli.commands) == set(COMMANDS) | {"verify"}
    assert set(verify.commands) == set(VERIFY_COMMANDS)
    for group, table in ((cli, COMMANDS), (verify, VERIFY_COMMANDS)):
        for name, (module, short) in table.items():
            cmd = group.commands[name]
            assert cmd.callback.__module__ == f"migrate.cli.{module}", name
            assert cmd.get_short_help_str(500) == short, f"short help of `{name}` drifted"
    for argv, lazy in ((["--help"], lazy_help), (["verify", "--help"], lazy_verify)):
        assert CliRunner().invoke(cli, argv, prog_name="migrate", terminal_width=80).output == lazy
    assert "export-files" in lazy_help and "sessions" in lazy_verify
