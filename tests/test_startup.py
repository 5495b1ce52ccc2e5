"""Start-up cost of the CLI (issue #12): ``streamgen --help`` and the parsers import no heavy
module; only the subcommand that runs brings torch & co. (Timings: benchmarks/bench_startup.py.)
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import textwrap

import pytest

from streamgen import cli

HEAVY = ("torch", "numpy", "pydantic", "yaml", "tqdm", "kafka", "confluent_kafka",
         "prometheus_client", "matplotlib", "river", "streamgen.config", "streamgen.core.engine")
# Subcommands whose ``--help`` imports none of HEAVY (``evaluate`` needs numpy at import).
LIGHT = ("score", "train", "run", "demo", "record", "replay", "bench", "backfill",
         "evaluate-generated")


def _in_fresh_interpreter(code: str) -> subprocess.CompletedProcess:
    return subprocess.run([sys.executable, "-c", textwrap.dedent(code)], capture_output=True,
                          text=True, timeout=120)


def test_help_imports_no_heavy_module():
    res = _in_fresh_interpreter(f"""
        import sys
        from streamgen import cli
        for argv in (["--help"], ["--version"]):
            try:
                cli.main(argv)
            except SystemExit as exc:
                assert exc.code == 0, exc.code
        cli.build_parser(None).format_help()
        loaded = [m for m in {HEAVY!r} if m in sys.modules]
        assert not loaded, loaded
    """)
    assert res.returncode == 0, res.stderr
    assert "usage: streamgen" in res.stdout and "streamgen " in res.stdout


def test_subcommand_help_imports_no_heavy_module():
    res = _in_fresh_interpreter(f"""
        import sys
        from streamgen import cli
        for cmd in {LIGHT!r}:
            try:
                cli.main([cmd, "--help"])
            except SystemExit as exc:
                assert exc.code == 0, (cmd, exc.code)
            loaded = [m for m in {HEAVY!r} if m in sys.modules]
            assert not loaded, (cmd, loaded)
    """)
    assert res.returncode == 0, res.stderr


def _subcommands(parser: argparse.ArgumentParser) -> list[tuple[str, str | None]]:
    sub = next(a for a in parser._actions if isinstance(a, argparse._SubParsersAction))
    return [(a.dest, a.help) for a in sub._choices_actions]


def test_stub_table_matches_the_modules():
    """The names and help of ``cli._COMMANDS`` (stubs) are what each module registers."""
    full, stubs = cli.build_parser(), cli.build_parser(None)
    assert _subcommands(stubs) == _subcommands(full)
    assert stubs.format_help() == full.format_help()
    for _, names in cli._COMMANDS:
        for name, _ in names:
            one = cli.build_parser(name)
            assert _subcommands(one) == _subcommands(full)


@pytest.mark.parametrize(("argv", "command"), [
    (["score", "in.csv", "-o", "out.csv"], "score"),
    (["--", "train", "x"], "train"),
    (["--help"], None),
    ([], None),
])
def test_command_guess(argv, command):
    assert cli._command_in(argv) == command


@pytest.mark.parametrize("argv", [
    ["score", "in.csv", "-o", "out.csv"], ["--", "score", "in.csv", "-o", "out.csv"],
    ["-", "score"], ["-1", "score"], ["", "score"], ["--pipeline", "p.yaml", "score"],
    ["-x y", "score"], ["--", "-score", "score"], ["--vers", "score"],
])
def test_guess_is_the_command_argparse_runs(argv, capsys):
    """Whenever argparse accepts the command it reads in ``argv``, it is the guessed one (so
    the subcommand that runs is never a stub), and a rejected one is rejected alike."""
    outcomes = []
    for parser in (cli.build_parser(), cli.build_parser(cli._command_in(argv))):
        try:
            args, _ = parser.parse_known_args(argv)
            outcomes.append(("ok", args.command, hasattr(args, "func")))
        except SystemExit as exc:
            outcomes.append(("exit", exc.code, capsys.readouterr().err))
    assert outcomes[0] == outcomes[1]
    if outcomes[0][0] == "ok":
        assert outcomes[0][1] == cli._command_in(argv) and outcomes[0][2]
