"""The ``soi`` command line: help for every command, the exit statuses, one-line errors, and that
a command's module is imported only when that command runs."""

from __future__ import annotations

import subprocess
import sys

import pytest

from soi.cli import COMMANDS, main


def test_help_lists_every_command(capsys):
    assert main(["--help"]) == 0
    out, err = capsys.readouterr()
    assert out.startswith("usage: soi") and err == ""
    for name in COMMANDS:
        assert f"    {name} " in out, name


def test_bare_soi_prints_the_help_and_fails(capsys):
    assert main([]) == 2
    out, err = capsys.readouterr()
    assert out.startswith("usage: soi") and "COMMAND" in out and err == ""


@pytest.mark.parametrize("command", list(COMMANDS))
def test_command_help(command, capsys):
    assert main([command, "--help"]) == 0
    out = capsys.readouterr().out
    assert out.startswith(f"usage: soi {command}") and "%%" not in out, out


def test_unknown_command_is_a_one_line_error(capsys):
    assert main(["bogus", "--help"]) == 2
    out, err = capsys.readouterr()
    assert out == "" and err.count("\n") == 1, err
    assert err.startswith("soi: error: unknown command 'bogus'") and "cost" in err


def test_bad_option_value_is_a_usage_error(capsys):
    assert main(["cost", "--frame-rate", "fast"]) == 2
    err = capsys.readouterr().err
    assert err == "soi cost: error: argument --frame-rate: expected a number, got 'fast' (see soi cost --help)\n", err


def test_python_m_soi_help_imports_no_command():
    # `python -m soi --help` through soi/__main__.py, in a fresh interpreter: exit status 0, no
    # traceback, and no soi.cli.<command> module imported (what keeps the help fast).
    code = (
        "import runpy, sys\n"
        "sys.argv = ['soi', '--help']\n"
        "try:\n"
        "    runpy.run_module('soi', run_name='__main__')\n"
        "except SystemExit as exit_:\n"
        "    print('exit', exit_.code, sorted(m for m in sys.modules if m.startswith('soi.cli.')))\n"
    )
    done = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0 and "Traceback" not in done.stderr, done.stderr
    assert done.stdout.strip().splitlines()[-1] == "exit 0 []", done.stdout
