"""The ``terndb`` command line (also ``python -m terndb``).

Subcommands are registered in :data:`SUBCOMMANDS`; each adds its own argparse
sub-parser and handler, so ``check``, ``replicate`` or ``import`` slot in
beside ``shell``.  A first argument that is not a subcommand is a database
path for the shell: ``terndb PATH`` means ``terndb shell PATH`` (a database
that is literally named like a subcommand needs the explicit ``shell``).

Exit status: 0 on success, 1 when a statement or command failed (or the
database could not be opened), 2 for bad usage, 130 after Ctrl-C.
"""
from __future__ import annotations

import argparse
import os
import sys
from typing import Any, Callable, Sequence, TextIO

from terndb.shell import MODES, OutputSettings, Shell

__all__ = ["build_parser", "main", "open_terndb", "parse_args", "SUBCOMMANDS"]

#: Opens a database: ``connect(path, readonly) -> DB-API connection``.
Connector = Callable[[str, bool], Any]

MEMORY_PATH = ":memory:"


def open_terndb(path: str, readonly: bool) -> Any:
    """Open ``path`` with ``terndb.connect`` (imported here, at use time, so this
    module imports even before the driver is complete)."""
    import terndb  # noqa: PLC0415 - see docstring

    options = {"readonly": True} if readonly else {}
    return terndb.connect(path, **options)


def _terndb_error_class() -> type[BaseException]:
    import terndb  # noqa: PLC0415

    return terndb.Error


def _version() -> str:
    from importlib.metadata import PackageNotFoundError, version  # noqa: PLC0415

    try:
        return version("terndb")
    except PackageNotFoundError:
        return "unknown"


# ---------------------------------------------------------------------------
# The `shell` subcommand
# ---------------------------------------------------------------------------

def _add_shell_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "shell",
        help="interactive SQL shell (the default: `terndb PATH` opens it)",
        description="Run SQL on a terndb database: interactively, from the "
        "SQL arguments and -c commands, or from standard input.",
    )
    parser.add_argument("path", nargs="?", metavar="PATH",
                        help="database directory (default: a temporary in-memory one)")
    parser.add_argument("sql", nargs="*", metavar="SQL",
                        help="SQL statements or dot commands to run instead of reading stdin")
    parser.add_argument("-c", "--command", action="append", default=[], metavar="SQL",
                        dest="commands",
                        help="run SQL or a dot command (repeatable; runs before SQL arguments)")
    parser.add_argument("--readonly", action="store_true", help="open the database read-only")
    parser.add_argument("--timer", action="store_true", help="print the run time of each statement")
    parser.add_argument("--mode", choices=MODES,
                        help="output mode (default: table on a terminal, list otherwise)")
    parser.add_argument("--header", action=argparse.BooleanOptionalAction, default=None,
                        help="show column names in list and csv modes")
    parser.add_argument("--bail", action="store_true", help="stop at the first error")
    parser.set_defaults(handler=_run_shell)
    return parser


def _run_shell(args: argparse.Namespace, streams: "_Streams", connect: Connector,
               error_class: type[BaseException]) -> int:
    path = args.path or MEMORY_PATH
    try:
        connection = connect(path, args.readonly)
    except Exception as exc:  # noqa: BLE001 - any failure to open is one clear line
        streams.stderr.write(f"Error: unable to open database \"{path}\": {exc}\n")
        return 1
    terminal = _isatty(streams.stdin) and _isatty(streams.stdout)
    settings = OutputSettings(mode=args.mode or ("table" if terminal else "list"),
                              headers=bool(args.header))
    shell = Shell(connection, error_class, stdout=streams.stdout, stderr=streams.stderr,
                  settings=settings, timer=args.timer, bail=args.bail)
    try:
        interactive = _feed_shell(shell, args, streams, path)
    finally:
        shell.close()
        try:
            connection.close()
        except Exception as exc:  # noqa: BLE001 - report, but keep the run's status
            streams.stderr.write(f"Error: closing the database: {exc}\n")
    if shell.exit_code is not None:  # `.exit N` chose the status
        return shell.exit_code
    # Errors typed at the prompt were shown there; they fail scripts only.
    return 1 if shell.failed and not interactive else 0


def _feed_shell(shell: Shell, args: argparse.Namespace, streams: "_Streams", path: str) -> bool:
    """Run the -c commands and SQL arguments if any, else the prompt (stdin is a
    terminal) or the script on stdin.  Return True if it was the prompt."""
    commands = list(args.commands) + list(args.sql)
    if commands:
        for command in commands:
            shell.run_script(command)
            if shell.finished:
                break
        return False
    if not _isatty(streams.stdin):
        shell.run_lines(streams.stdin)
        return False
    banner = f"terndb {_version()}\nEnter \".help\" for usage hints."
    if path == MEMORY_PATH:
        banner += "\nConnected to a transient in-memory database."
    shell.interact(banner=banner)
    return True


# ---------------------------------------------------------------------------
# Parser and entry point
# ---------------------------------------------------------------------------

#: name -> function adding that subcommand's sub-parser to an argparse
#: ``subparsers`` object and returning it (the sub-parser sets ``handler``).
def _add_replicate_parser(subparsers: Any) -> argparse.ArgumentParser:
    from terndb.replication import add_cli_parser  # noqa: PLC0415 - engine import at use time

    return add_cli_parser(subparsers)


def _add_keygen_parser(subparsers: Any) -> argparse.ArgumentParser:
    from terndb.replication import add_keygen_parser  # noqa: PLC0415 - engine import at use time

    return add_keygen_parser(subparsers)


def _add_check_parser(subparsers: Any) -> argparse.ArgumentParser:
    parser = subparsers.add_parser(
        "check", help="check a database's integrity",
        description="Check PATH: the catalog, every row, that every index agrees with its table, "
        "and the binlog. Prints a summary (and each problem); exit status 1 if anything is wrong.")
    parser.add_argument("path", metavar="PATH", help="database directory")
    parser.add_argument("--max-problems", type=int, default=100, help="stop listing after this many")
    parser.set_defaults(handler=_run_check)
    return parser


def _run_check(args: argparse.Namespace, streams: "_Streams", connect: Connector,
               error_class: type[BaseException]) -> int:
    import terndb  # noqa: PLC0415 - the CLI imports the engine only when it runs
    from terndb.engine.integrity import check_database  # noqa: PLC0415

    if not os.path.isdir(args.path):
        streams.stderr.write(f"Error: no database at {args.path}\n")
        return 1
    try:
        con = terndb.connect(args.path, readonly=True)
    except terndb.Error as exc:
        streams.stderr.write(f"Error: unable to open database \"{args.path}\": {exc}\n")
        return 1
    try:
        report = check_database(con._db, max_problems=args.max_problems)
    finally:
        con.close()
    for problem in report.problems:
        streams.stdout.write(f"problem: {problem}\n")
    streams.stdout.write(report.summary() + "\n")
    return 0 if report.ok else 1


SUBCOMMANDS: dict[str, Callable[[Any], argparse.ArgumentParser]] = {
    "shell": _add_shell_parser,
    "check": _add_check_parser,
    "replicate": _add_replicate_parser,
    "keygen": _add_keygen_parser,
}


def build_parser() -> tuple[argparse.ArgumentParser, dict[str, argparse.ArgumentParser]]:
    """The ``terndb`` argument parser, and each subcommand's sub-parser by name."""
    parser = argparse.ArgumentParser(
        prog="terndb",
        description="terndb: an embedded SQL + JSON database on LMDB. "
        "`terndb PATH` is short for `terndb shell PATH`.",
    )
    parser.add_argument("--version", action="version", version=f"terndb {_version()}")
    subparsers = parser.add_subparsers(dest="subcommand", metavar="COMMAND")
    commands = {name: add_parser(subparsers) for name, add_parser in SUBCOMMANDS.items()}
    return parser, commands


def parse_args(argv: Sequence[str]) -> argparse.Namespace:
    """Parse a command line (argparse exits on --help, --version and bad usage).

    The sub-parser parses on its own, with ``parse_intermixed_args``, so options
    may follow the positionals: ``terndb db --readonly "SELECT 1"``."""
    parser, commands = build_parser()
    argv = _with_default_subcommand(list(argv))
    if argv[0] not in commands:  # -h, --help or --version
        return parser.parse_args(argv)
    args = commands[argv[0]].parse_intermixed_args(argv[1:])
    args.subcommand = argv[0]
    return args


def _with_default_subcommand(argv: list[str]) -> list[str]:
    """``terndb [OPTIONS] PATH ...`` -> ``terndb shell [OPTIONS] PATH ...``."""
    if argv and (argv[0] in SUBCOMMANDS or argv[0] in ("-h", "--help", "--version")):
        return argv
    return ["shell", *argv]


class _Streams:
    def __init__(self, stdin: TextIO, stdout: TextIO, stderr: TextIO) -> None:
        self.stdin, self.stdout, self.stderr = stdin, stdout, stderr


def _isatty(stream: TextIO) -> bool:
    try:
        return stream.isatty()
    except (AttributeError, ValueError):
        return False


def main(
    argv: Sequence[str] | None = None,
    *,
    connect: Connector | None = None,
    error_class: type[BaseException] | None = None,
    stdin: TextIO | None = None,
    stdout: TextIO | None = None,
    stderr: TextIO | None = None,
) -> int:
    """Run the command line; return the exit status.

    ``connect`` and ``error_class`` default to terndb's; tests inject others
    (e.g. a sqlite3 connection and ``sqlite3.Error``), and the streams.
    """
    streams = _Streams(stdin or sys.stdin, stdout or sys.stdout, stderr or sys.stderr)
    try:
        args = parse_args(sys.argv[1:] if argv is None else argv)
    except SystemExit as exit_:  # argparse exits on --help, --version and bad usage
        return exit_.code if isinstance(exit_.code, int) else 2
    try:
        return args.handler(args, streams, connect or open_terndb,
                            error_class or _terndb_error_class())
    except KeyboardInterrupt:
        streams.stderr.write("\n")
        return 130
    except BrokenPipeError:
        # The reader went away (`terndb db -c ... | head`): stop quietly, and
        # point stdout at devnull so the interpreter's final flush cannot fail.
        if stdout is None:
            devnull = os.open(os.devnull, os.O_WRONLY)
            os.dup2(devnull, sys.stdout.fileno())
        return 1
