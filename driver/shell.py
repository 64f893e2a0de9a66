"""The interactive SQL shell behind ``terndb shell`` (in the manner of the sqlite3 CLI).

The shell is written against the DB-API 2.0 interface only, so it runs on any
PEP 249 connection: it uses ``cursor()``, ``execute``, ``description``,
``fetchmany``, ``commit``, ``rollback`` and ``close``, the driver's ``Error``
class (passed in), and catalog rows read from ``sqlite_master`` (columns
``type, name, tbl_name, sql``).  The tests drive it with a ``sqlite3``
connection; ``terndb.cli`` hands it a terndb one.

Parts, each usable on its own:

* :class:`StatementScanner`, :func:`split_statements`, :func:`is_complete` cut
  SQL text into statements at top-level ``;``, respecting quotes, ``--`` and
  ``/* */`` comments, and ``CREATE TRIGGER ... BEGIN ... END`` bodies.  The
  scanner is incremental, so a long script is scanned once, line by line.
* The printers (one class per output mode) stream a result set chunk by
  chunk (``fetchmany``), never holding a whole result in memory.
* :class:`Shell` runs scripts, dot commands and the interactive loop.
"""
from __future__ import annotations

import csv
import io
import json
import os
import re
import shlex
import sys
import time
import unicodedata
from dataclasses import dataclass, field
from decimal import Decimal
from typing import Any, Callable, Iterable, Sequence, TextIO

__all__ = [
    "CHUNK_ROWS",
    "MODES",
    "OutputSettings",
    "Shell",
    "Statement",
    "StatementScanner",
    "format_float",
    "scan_statements",
    "is_complete",
    "split_statements",
]

#: Rows fetched per ``fetchmany`` call.  Table and box modes size their
#: columns over one chunk; see :class:`_GridPrinter`.
CHUNK_ROWS = 1000

#: Output modes understood by ``--mode`` and ``.mode``.
MODES = ("table", "box", "csv", "json", "list", "line")

PROMPT = "terndb> "
CONTINUATION_PROMPT = "   ...> "
HISTORY_FILE = "~/.terndb_history"
_HISTORY_LENGTH = 2000
_MAX_READ_DEPTH = 16  # .read nesting limit: stops a file that reads itself


# ---------------------------------------------------------------------------
# Statement splitting
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class Statement:
    """One SQL statement cut from a script, without its terminating ``;``."""

    text: str
    line: int  # 1-based line of the statement's first token in the script


# One token per match.  Quoted tokens and block comments only match when
# closed; an unclosed one falls through to ``open`` and makes the scanner
# wait for more text.  ``''`` inside a string scans as two adjacent strings,
# which puts the quoted region in exactly the same place.
_TOKEN = re.compile(
    r"""
      (?P<space>\s+)
    | (?P<line_comment>--[^\n]*\n?)
    | (?P<block_comment>/\*.*?\*/)
    | (?P<quoted>'[^']*'|"[^"]*"|`[^`]*`|\[[^\]]*\])
    | (?P<word>\w+)
    | (?P<semicolon>;)
    | (?P<open>['"`\[]|/\*)
    | (?P<other>[^\s\w'"`\[;/-]+|.)
    """,
    re.VERBOSE | re.DOTALL,
)
# Inside a statement known not to be a trigger only quotes, comments and `;`
# matter: everything else is skipped in runs, not token by token.
_PLAIN_RUN = re.compile(r"[^'\"`\[;/-]+")
_TEMP_WORDS = frozenset({"TEMP", "TEMPORARY"})
# Inside a trigger, these open a block that a matching END closes.
_BLOCK_OPENERS = frozenset({"BEGIN", "CASE"})


class StatementScanner:
    """Incrementally cut SQL text into statements.

    ``feed`` any amount of text and get back the statements it completed; the
    scanner keeps the unfinished rest.  A ``;`` ends a statement unless it is
    inside a quote, a comment, or the ``BEGIN ... END`` body of a
    ``CREATE TRIGGER`` (``CASE ... END`` nests there too, so a ``CASE``
    expression inside a trigger body does not end the trigger early).

    Each character is scanned once, so feeding a long statement line by line
    costs linear time; the exception is a token still open at the end of a
    feed (a quote spanning lines), which is rescanned from its start.
    """

    def __init__(self, first_line: int = 1) -> None:
        self._buf = ""           # text not yet scanned (from an open token on)
        self._parts: list[str] = []  # scanned text of the pending statement
        self._pending = False    # a statement has started (a token was seen)
        self._line = first_line  # line number at the start of _buf
        self._start_line = first_line
        self._head: list[str] = []  # first tokens, upper-cased, to spot CREATE TRIGGER
        self._trigger = False
        self._plain = False         # known not to be a trigger: words no longer matter
        self._depth = 0             # BEGIN/CASE nesting inside a trigger
        # Why scanning stopped before the end of the text: None, "quote" (an
        # unclosed quote or block comment), "partial" (a word, or a - or / that
        # may start a comment, may go on) or "comment" (a line comment not yet ended).
        self._waiting: str | None = None
        #: Statement-ending semicolons seen so far (empty statements included).
        self.terminators = 0

    @property
    def idle(self) -> bool:
        """True when nothing but whitespace or comments is pending."""
        return not self._pending and self._waiting in (None, "comment")

    def feed(self, text: str) -> list[Statement]:
        """Add text; return the statements it completed."""
        self._buf += text
        return self._scan(final=False)

    def finish(self) -> list[Statement]:
        """End of input: return the unterminated last statement, if any."""
        done = self._scan(final=True)
        if self._pending:
            done.append(self._emit(""))
        return done

    def reset(self, first_line: int | None = None) -> None:
        """Forget all text fed so far; the next text starts at ``first_line``."""
        self.__init__(self._line if first_line is None else first_line)  # type: ignore[misc]

    def _scan(self, final: bool) -> list[Statement]:
        done: list[Statement] = []
        buf, pos, size = self._buf, 0, len(self._buf)
        segment = 0  # where the pending statement's text begins in buf
        self._waiting = None
        while pos < size:
            if self._plain:
                run = _PLAIN_RUN.match(buf, pos)
                if run is not None:
                    self._line += run.group().count("\n")
                    pos = run.end()
                    continue
            match = _TOKEN.match(buf, pos)
            assert match is not None  # `other` matches any character
            kind, text = match.lastgroup, match.group()
            if not final:
                self._waiting = self._wait_reason(kind, text, match.end(), size)
                if self._waiting:
                    break
            elif kind == "open":
                # Unclosed at the very end: it runs to the end of the input (an
                # unclosed quote is then the database's error to report).
                text = buf[pos:]
                kind = "block_comment" if text.startswith("/*") else "quoted"
            start, pos = pos, pos + len(text)
            newlines = text.count("\n")
            if kind in ("space", "line_comment", "block_comment"):
                self._line += newlines
                continue
            if not self._pending:
                if kind == "semicolon":
                    self.terminators += 1  # an empty statement: nothing to run
                    continue
                self._pending, self._start_line, segment = True, self._line, start
            self._line += newlines
            if kind == "semicolon" and not (self._trigger and self._depth > 0):
                self.terminators += 1
                done.append(self._emit(buf[segment:start]))
                continue
            self._note_token(kind, text)
        if self._pending:
            self._parts.append(buf[segment:pos])
        self._buf = buf[pos:]
        return done

    @staticmethod
    def _wait_reason(kind: str | None, text: str, end: int, size: int) -> str | None:
        """Why scanning must stop at this token until more text arrives, if it must."""
        if kind == "open":
            return "quote"
        if end < size:
            return None
        # The token touches the end of the text: it may go on in the next feed.
        if kind == "line_comment" and not text.endswith("\n"):
            return "comment"
        if kind == "word" or (kind == "other" and text in ("-", "/")):
            return "partial"  # a keyword cut in two, or maybe the start of -- or /*
        return None

    def _note_token(self, kind: str | None, text: str) -> None:
        """Track the tokens that decide where a trigger's body ends."""
        upper = text.upper() if kind == "word" else text
        if len(self._head) < 3 and not self._trigger:
            self._head.append(upper)
            head = self._head
            if head[0] == "CREATE" and len(head) >= 2:
                if head[1] == "TRIGGER" or (
                    len(head) == 3 and head[1] in _TEMP_WORDS and head[2] == "TRIGGER"
                ):
                    self._trigger = True
            self._plain = not self._trigger and (head[0] != "CREATE" or len(head) == 3)
        if self._trigger and kind == "word":
            if upper in _BLOCK_OPENERS:
                self._depth += 1
            elif upper == "END" and self._depth > 0:
                self._depth -= 1

    def _emit(self, tail: str) -> Statement:
        """The pending statement: earlier parts plus ``tail``; start afresh."""
        stmt = Statement(("".join(self._parts) + tail).rstrip(), self._start_line)
        self._parts, self._pending = [], False
        self._head, self._trigger, self._plain, self._depth = [], False, False, 0
        return stmt


def scan_statements(text: str) -> list[Statement]:
    """All statements of ``text`` with their line numbers, the last one
    kept even without a terminating ``;``."""
    scanner = StatementScanner()
    return scanner.feed(text) + scanner.finish()


def split_statements(text: str) -> list[str]:
    """Cut a script into statements (without their ``;``), dropping empty ones
    and comment-only ones; text after the last ``;`` is a last statement."""
    return [stmt.text for stmt in scan_statements(text)]


def is_complete(text: str) -> bool:
    """True when ``text`` holds at least one top-level ``;`` and every statement
    is closed by one (only whitespace or comments may follow), as
    ``sqlite3.complete_statement``; unlike it, ``CASE ... END`` nests inside a
    trigger body."""
    scanner = StatementScanner()
    scanner.feed(text)
    return scanner.terminators > 0 and scanner.idle


# ---------------------------------------------------------------------------
# Value rendering
# ---------------------------------------------------------------------------

_INF = float("inf")


def format_float(value: float) -> str:
    """A REAL as the sqlite3 CLI shows it: 15 significant digits, always with a
    decimal point (``1.0``, ``1.0e+20``)."""
    text = float.__repr__(value)
    if len(text) <= 16 and "e" not in text and "n" not in text:
        # The shortest round-trip form has at most 15 digits and no exponent:
        # "%.15g" would give the same digits (the common case, done fast).
        return text
    if value != value:
        return "NaN"
    if value in (_INF, -_INF):
        return "Inf" if value > 0 else "-Inf"
    text = "%.15g" % value
    mantissa, e, exponent = text.partition("e")
    if "." not in mantissa:
        mantissa += ".0"
    return mantissa + e + exponent


def format_blob(value: bytes | bytearray | memoryview) -> str:
    """A BLOB as an SQL hex literal: binary data must not reach a terminal raw."""
    return "X'" + bytes(value).hex().upper() + "'"


def _text_renderer(nullvalue: str) -> Callable[[Any], str]:
    """The function that turns one cell into text for the text modes."""
    def render(value: Any) -> str:
        kind = type(value)
        if kind is str:
            return value
        if value is None:
            return nullvalue
        if kind is int:
            return int.__repr__(value)
        if kind is float:
            return format_float(value)
        if isinstance(value, str):
            return str.__str__(value)
        if isinstance(value, (bytes, bytearray, memoryview)):
            return format_blob(value)
        return str(value)
    return render


_CONTROL = str.maketrans({"\n": "\\n", "\r": "\\r", "\t": "\\t"})


def display_width(text: str) -> int:
    """Terminal columns taken by ``text`` (wide East Asian characters count 2,
    combining marks 0)."""
    if text.isascii():
        return len(text)
    width = 0
    for char in text:
        if unicodedata.combining(char):
            continue
        width += 2 if unicodedata.east_asian_width(char) in "WF" else 1
    return width


def _pad(text: str, width: int, align: str) -> str:
    gap = width - display_width(text)
    if gap <= 0:
        return text
    if align == "right":
        return " " * gap + text
    if align == "center":
        left = gap // 2
        return " " * left + text + " " * (gap - left)
    return text + " " * gap


# ---------------------------------------------------------------------------
# Result printers, one per mode
# ---------------------------------------------------------------------------

@dataclass
class OutputSettings:
    """What the output looks like; changed by options and dot commands."""

    mode: str = "list"
    headers: bool = False
    separator: str = "|"
    nullvalue: str = ""


class _Printer:
    """Streams one result set: ``begin(columns)``, ``rows(chunk)`` per chunk,
    then ``end()``.  Subclasses write one output mode."""

    def __init__(self, out: TextIO, settings: OutputSettings) -> None:
        self.out = out
        self.settings = settings
        self.render = _text_renderer(settings.nullvalue)
        self.columns: list[str] = []
        self.row_count = 0

    def begin(self, columns: list[str]) -> None:
        self.columns = columns

    def rows(self, rows: Sequence[Sequence[Any]]) -> None:
        raise NotImplementedError

    def end(self) -> None:
        """Close the result (a table's bottom border, a JSON array's bracket)."""


class _ListPrinter(_Printer):
    """``list`` mode: values joined by the separator, one row per line."""

    def rows(self, rows: Sequence[Sequence[Any]]) -> None:
        sep, render = self.settings.separator, self.render
        lines = [sep.join(map(render, row)) for row in rows]
        if self.row_count == 0 and self.settings.headers:
            lines.insert(0, sep.join(self.columns))
        self.row_count += len(rows)
        self.out.write("\n".join(lines) + "\n")


class _CsvPrinter(_Printer):
    """``csv`` mode: RFC 4180 quoting, ``\\n`` line ends."""

    def begin(self, columns: list[str]) -> None:
        super().begin(columns)
        self._buffer = io.StringIO()
        self._writer = csv.writer(self._buffer, lineterminator="\n")

    def rows(self, rows: Sequence[Sequence[Any]]) -> None:
        if self.row_count == 0 and self.settings.headers:
            self._writer.writerow(self.columns)
        render = self.render
        self._writer.writerows([list(map(render, row)) for row in rows])
        self.row_count += len(rows)
        self.out.write(self._buffer.getvalue())
        self._buffer.seek(0)
        self._buffer.truncate()


_json_string = json.encoder.encode_basestring  # the C encoder, UTF-8 kept as is


def _json_text(value: Any) -> str:
    """A cell as JSON text: NULL is null, a blob its hex digits, NaN/Inf null.

    Dispatches on the common types first: ``json.dumps`` per cell costs
    several times more."""
    kind = type(value)
    if kind is str:
        return _json_string(value)
    if kind is int:
        return int.__repr__(value)
    if value is None:
        return "null"
    if kind is float:
        return "null" if value != value or value in (_INF, -_INF) else float.__repr__(value)
    if isinstance(value, (bytes, bytearray, memoryview)):
        return '"' + bytes(value).hex().upper() + '"'
    if isinstance(value, Decimal):
        return _json_text(float(value))
    return json.dumps(value, ensure_ascii=False, default=str)


class _JsonPrinter(_Printer):
    """``json`` mode: one JSON array of objects per result set, a row per line.

    Objects are built by hand so duplicate column names survive (a dict
    would merge them), as in the sqlite3 CLI."""

    def begin(self, columns: list[str]) -> None:
        super().begin(columns)
        self._keys = [_json_string(name) + ":" for name in columns]

    def rows(self, rows: Sequence[Sequence[Any]]) -> None:
        keys, concat = self._keys, str.__add__
        objects = ["{" + ",".join(map(concat, keys, map(_json_text, row))) + "}" for row in rows]
        lead = "[" if self.row_count == 0 else ",\n"
        self.row_count += len(rows)
        self.out.write(lead + ",\n".join(objects))

    def end(self) -> None:
        if self.row_count:
            self.out.write("]\n")


class _LinePrinter(_Printer):
    """``line`` mode: one ``column = value`` line per cell, rows apart by a blank line."""

    def begin(self, columns: list[str]) -> None:
        super().begin(columns)
        width = max((display_width(name) for name in columns), default=0)
        self._labels = [_pad(name, width, "right") + " = " for name in columns]

    def rows(self, rows: Sequence[Sequence[Any]]) -> None:
        render, labels = self.render, self._labels
        blocks = [
            "\n".join(label + render(value) for label, value in zip(labels, row))
            for row in rows
        ]
        lead = "" if self.row_count == 0 else "\n"
        self.row_count += len(rows)
        self.out.write(lead + "\n\n".join(blocks) + "\n")


@dataclass(frozen=True)
class _Frame:
    """Characters of a grid: (left, joint, right, fill) for each kind of rule,
    and the vertical bar."""

    top: tuple[str, str, str, str]
    middle: tuple[str, str, str, str]
    bottom: tuple[str, str, str, str]
    bar: str


_ASCII_FRAME = _Frame(("+", "+", "+", "-"), ("+", "+", "+", "-"), ("+", "+", "+", "-"), "|")
_BOX_FRAME = _Frame(("┌", "┬", "┐", "─"), ("├", "┼", "┤", "─"), ("└", "┴", "┘", "─"), "│")


class _GridPrinter(_Printer):
    """``table`` and ``box`` modes: a framed grid, header always shown, numbers
    right-aligned, control characters shown escaped (``\\n``).

    Streaming: column widths come from the first chunk (``CHUNK_ROWS`` rows)
    and the header.  When a later chunk holds a wider value, the grid is
    closed and reopened, header repeated, with the widened columns: output
    keeps flowing without reading the whole result first.
    """

    def __init__(self, out: TextIO, settings: OutputSettings, frame: _Frame) -> None:
        super().__init__(out, settings)
        self.frame = frame
        self.widths: list[int] = []

    def rows(self, rows: Sequence[Sequence[Any]]) -> None:
        # Work column by column: widths, escaping and padding are then a few
        # C-level calls per column instead of Python calls per cell.
        raw = list(zip(*rows))
        texts = [_escape_column(list(map(self.render, column))) for column in raw]
        widths = self._widths_for(texts)
        lines: list[str] = []
        if widths != self.widths:
            if self.widths:
                lines.append(self._rule(self.frame.bottom))
            self.widths = widths
            lines += [self._rule(self.frame.top), self._header(), self._rule(self.frame.middle)]
        padded = [_pad_column(text, column, width)
                  for text, column, width in zip(texts, raw, widths)]
        bar = self.frame.bar
        inner, left, right = f" {bar} ", bar + " ", " " + bar
        lines += [left + inner.join(cells) + right for cells in zip(*padded)]
        self.row_count += len(rows)
        self.out.write("\n".join(lines) + "\n")

    def end(self) -> None:
        if self.widths:
            self.out.write(self._rule(self.frame.bottom) + "\n")

    def _widths_for(self, texts: list[list[str]]) -> list[int]:
        widths = self.widths or [display_width(name.translate(_CONTROL)) for name in self.columns]
        return [max(width, _column_width(column)) for width, column in zip(widths, texts)]

    def _rule(self, parts: tuple[str, str, str, str]) -> str:
        left, joint, right, fill = parts
        return left + joint.join(fill * (width + 2) for width in self.widths) + right

    def _header(self) -> str:
        bar = self.frame.bar
        names = (_pad(name.translate(_CONTROL), width, "center")
                 for name, width in zip(self.columns, self.widths))
        return bar + " " + f" {bar} ".join(names) + " " + bar


_CONTROL_CHAR = re.compile("[\n\r\t]")
_NUMBER_TYPES = frozenset({int, float, Decimal})


def _escape_column(texts: list[str]) -> list[str]:
    """Show line breaks and tabs as ``\\n``, ``\\t``: they would break the grid."""
    if _CONTROL_CHAR.search("".join(texts)) is None:
        return texts
    return [text.translate(_CONTROL) for text in texts]


def _column_width(texts: list[str]) -> int:
    if not texts:
        return 0
    if "".join(texts).isascii():
        return max(map(len, texts))
    return max(map(display_width, texts))


def _pad_column(texts: list[str], values: Sequence[Any], width: int) -> list[str]:
    """Pad one column's cells to ``width``: numbers to the right, the rest to the left."""
    numbers = _NUMBER_TYPES
    if "".join(texts).isascii():
        return [text.rjust(width) if type(value) in numbers else text.ljust(width)
                for text, value in zip(texts, values)]
    return [_pad(text, width, "right" if type(value) in numbers else "left")
            for text, value in zip(texts, values)]


def make_printer(out: TextIO, settings: OutputSettings) -> _Printer:
    """The printer for ``settings.mode``."""
    mode = settings.mode
    if mode == "table":
        return _GridPrinter(out, settings, _ASCII_FRAME)
    if mode == "box":
        return _GridPrinter(out, settings, _BOX_FRAME)
    printers = {"list": _ListPrinter, "csv": _CsvPrinter, "json": _JsonPrinter,
                "line": _LinePrinter}
    return printers[mode](out, settings)


# ---------------------------------------------------------------------------
# Catalog helpers (sqlite_master)
# ---------------------------------------------------------------------------

@dataclass(frozen=True)
class _CatalogEntry:
    type: str
    name: str
    tbl_name: str
    sql: str | None
    schema: str = "main"

    @property
    def shown_name(self) -> str:
        """The name as the sqlite3 CLI lists it: qualified outside main."""
        return self.name if self.schema == "main" else f"{self.schema}.{self.name}"


def _like_to_regex(pattern: str) -> re.Pattern[str]:
    """SQL LIKE (``%``, ``_``, case-insensitive) as a regular expression.

    Filtering the catalog in Python keeps the shell's demands on the engine to
    one plain ``SELECT`` of ``sqlite_master``."""
    parts = []
    for char in pattern:
        parts.append(".*" if char == "%" else "." if char == "_" else re.escape(char))
    return re.compile("".join(parts), re.IGNORECASE | re.DOTALL)


def _columns_layout(names: list[str], total_width: int = 80) -> list[str]:
    """Lay names out in columns, filled top to bottom (as the sqlite3 CLI's ``.tables``)."""
    if not names:
        return []
    width = max(display_width(name) for name in names) + 2
    per_line = max(1, total_width // width)
    line_count = -(-len(names) // per_line)
    lines = []
    for row in range(line_count):
        cells = names[row::line_count]
        lines.append("".join(_pad(name, width, "left") for name in cells).rstrip())
    return lines


def _sql_literal(value: Any) -> str:
    """A value as an SQL literal, for ``.dump``."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return str(int(value))
    if isinstance(value, int):
        return str(value)
    if isinstance(value, float):
        if value != value:
            return "NULL"
        if value in (float("inf"), float("-inf")):
            return "1e999" if value > 0 else "-1e999"
        return repr(value)  # repr round-trips exactly, unlike the 15-digit display form
    if isinstance(value, (bytes, bytearray, memoryview)):
        return format_blob(value)
    return "'" + str(value).replace("'", "''") + "'"


def _quote_identifier(name: str) -> str:
    return '"' + name.replace('"', '""') + '"'


def _progress_bar(fraction: float, width: int = 30) -> str:
    """``[#######.......]  45%`` for a fraction between 0 and 1."""
    fraction = min(max(fraction, 0.0), 1.0)
    filled = int(round(fraction * width))
    return f"[{'#' * filled}{'.' * (width - filled)}] {fraction * 100:3.0f}%"


# ---------------------------------------------------------------------------
# The shell
# ---------------------------------------------------------------------------

_HELP = """\
.dump [TABLE]            Print SQL that recreates the database (or one table)
.exit [CODE]             Leave the shell (also .quit)
.headers on|off          Show column names in list, csv modes
.help                    Show this message
.import FILE TABLE       Load a CSV, Parquet or JSON-lines file into TABLE (created if missing)
.indexes [TABLE]         List indexes (of tables matching the LIKE pattern TABLE)
.mode [MODE]             Set (or show) the output mode: table box csv json list line
.nullvalue TEXT          Print TEXT in place of NULL values
.output [FILE|stdout]    Send results to FILE, or back to standard output
.quit                    Leave the shell
.read FILE               Run the SQL and dot commands in FILE
.schema [TABLE]          Show the CREATE statements (of tables matching TABLE)
.separator SEP           Column separator of list mode (default |)
.tables [PATTERN]        List tables and views (matching the LIKE pattern)
.timer on|off            Print the run time of each SQL statement
"""

_TXN_START = frozenset({"BEGIN"})
_TXN_END = frozenset({"COMMIT", "END"})
_FIRST_WORDS = re.compile(r"\s*(\w+)(?:\s+(?:TRANSACTION\s+)?(\w+))?", re.IGNORECASE)


def _parse_switch(value: str) -> bool:
    lowered = value.lower()
    if lowered in ("on", "yes", "true", "1"):
        return True
    if lowered in ("off", "no", "false", "0"):
        return False
    raise ValueError(f"not a boolean value: {value}")


@dataclass
class Shell:
    """An SQL shell over one DB-API connection.

    ``error_class`` is the driver's ``Error``: such errors print as
    ``Error: ...``; any other exception as ``Internal error: Type: ...``.
    Neither stops the shell (unless ``bail``).  ``failures`` counts failed
    statements and commands, for the exit status.

    Outside an explicit ``BEGIN ... COMMIT`` every statement is committed (or
    rolled back on error) at once, as in the sqlite3 CLI.
    """

    connection: Any
    error_class: type[BaseException] = Exception
    stdout: TextIO = field(default_factory=lambda: sys.stdout)
    stderr: TextIO = field(default_factory=lambda: sys.stderr)
    settings: OutputSettings = field(default_factory=OutputSettings)
    timer: bool = False
    bail: bool = False

    failures: int = field(default=0, init=False)
    stopped: bool = field(default=False, init=False)  # by .quit/.exit, or bail
    exit_code: int | None = field(default=None, init=False)  # given to .exit
    _out: TextIO | None = field(default=None, init=False)
    _in_user_transaction: bool = field(default=False, init=False)
    _read_depth: int = field(default=0, init=False)

    # -- public entry points ------------------------------------------------

    @property
    def out(self) -> TextIO:
        """Where results go: stdout, or the file of ``.output FILE``."""
        return self._out if self._out is not None else self.stdout

    @property
    def failed(self) -> bool:
        """True if any statement or command failed."""
        return self.failures > 0

    @property
    def finished(self) -> bool:
        """True once ``.quit``/``.exit`` ran, or an error stopped a ``bail`` run."""
        return self.stopped

    def run_script(self, text: str) -> bool:
        """Run SQL and dot commands (a dot command is a line starting with
        ``.``); return True if all succeeded."""
        return self.run_lines(io.StringIO(text))

    def run_lines(self, lines: Iterable[str]) -> bool:
        """Run input line by line (a script or piped stdin): each statement runs
        as soon as its ``;`` arrives; text left at the end runs as a last
        statement.  Errors name the line.  Return True if nothing failed."""
        scanner = StatementScanner()
        failures_before = self.failures
        for lineno, line in enumerate(lines, start=1):
            self._take_line(scanner, line, lineno, numbered=True)
            if self.finished:
                break
        else:
            self._run_statements(scanner.finish(), numbered=True)
        return self.failures == failures_before

    def interact(
        self,
        read_line: Callable[[str], str] | None = None,
        history_path: str | None = HISTORY_FILE,
        banner: str | None = None,
    ) -> None:
        """The interactive loop: prompt, read, run, until ``.quit`` or end of
        input (Ctrl-D).  Ctrl-C drops the line being typed.

        ``read_line(prompt)`` defaults to :func:`input` (with readline history
        in ``history_path`` when readline is available); tests pass their own.
        """
        history = None
        if read_line is None:
            read_line = input
            history = _History.open(history_path)
        if banner:
            self.stdout.write(banner + "\n")
        scanner = StatementScanner()
        lineno = 0
        try:
            while not self.finished:
                prompt = PROMPT if scanner.idle else CONTINUATION_PROMPT
                try:
                    line = read_line(prompt)
                except EOFError:
                    self.stdout.write("\n")
                    break
                except KeyboardInterrupt:
                    self.stdout.write("^C\n")
                    scanner.reset()
                    continue
                lineno += 1
                try:
                    self._take_line(scanner, line + "\n", lineno, numbered=False)
                except KeyboardInterrupt:
                    self.stderr.write("Error: interrupted\n")
                    self._after_statement("", ok=False)
                    scanner.reset()
                self.stdout.flush()
        finally:
            if history is not None:
                history.save()

    def close(self) -> None:
        """Close the ``.output`` file, if any (the connection is the caller's)."""
        self._set_output(None)

    # -- line handling ------------------------------------------------------

    def _take_line(self, scanner: StatementScanner, line: str, lineno: int, numbered: bool) -> None:
        """One input line: a dot command when no SQL is pending, else SQL text.
        ``numbered``: error messages give line numbers (not at the prompt)."""
        if scanner.idle:
            # Nothing but comments pending: drop them, so the buffer never
            # grows past one statement and line numbers restart here.
            scanner.reset(lineno)
            if line.lstrip().startswith("."):
                if not self._dot_command(line.strip(), lineno if numbered else None):
                    self._note_failure()
                return
            if not line.strip():
                return
        self._run_statements(scanner.feed(line), numbered)

    def _run_statements(self, statements: list[Statement], numbered: bool) -> None:
        for statement in statements:
            if self.finished:
                return
            if not self.execute(statement.text, statement.line if numbered else None):
                self._note_failure()

    def _note_failure(self) -> None:
        self.failures += 1
        if self.bail:
            self.stopped = True

    def _report(self, message: str, line: int | None) -> None:
        where = f"near line {line}: " if line is not None else ""
        self.stderr.write(f"Error: {where}{message}\n")
        self.stderr.flush()

    # -- SQL ----------------------------------------------------------------

    def execute(self, sql: str, line: int | None = None) -> bool:
        """Run one statement and print its rows; report an error (``near line
        N`` when ``line`` is given); return success."""
        started = time.perf_counter()
        try:
            self._execute_and_print(sql)
            self._after_statement(sql, ok=True)
            ok = True
        except self.error_class as exc:
            self._after_statement(sql, ok=False)
            self._report(str(exc) or type(exc).__name__, line)
            ok = False
        except BrokenPipeError:
            raise  # the reader of our output is gone: nothing left to do
        except Exception as exc:  # noqa: BLE001 - the shell must survive engine bugs
            self._after_statement(sql, ok=False)
            self.stderr.write(f"Internal error: {type(exc).__name__}: {exc}\n")
            ok = False
        if self.timer:
            self.out.write(f"Run Time: real {time.perf_counter() - started:.3f} s\n")
        self.out.flush()
        return ok

    def _execute_and_print(self, sql: str) -> None:
        cursor = self.connection.cursor()
        try:
            cursor.execute(sql)
            if cursor.description is not None:
                self._print_rows(cursor)
        finally:
            _close_quietly(cursor)

    def _print_rows(self, cursor: Any) -> None:
        printer = make_printer(self.out, self.settings)
        printer.begin([str(column[0]) for column in cursor.description])
        try:
            while True:
                chunk = cursor.fetchmany(CHUNK_ROWS)
                if not chunk:
                    break
                printer.rows(chunk)
        finally:
            printer.end()

    def _after_statement(self, sql: str, ok: bool) -> None:
        """Commit (or roll back) outside an explicit transaction; track BEGIN/COMMIT."""
        words = _FIRST_WORDS.match(sql)
        first = words.group(1).upper() if words else ""
        second = (words.group(2) or "").upper() if words else ""
        if ok:
            if first in _TXN_START:
                self._in_user_transaction = True
            elif first in _TXN_END or (first == "ROLLBACK" and second != "TO"):
                self._in_user_transaction = False
        if self._in_user_transaction:
            return
        try:
            if ok:
                self.connection.commit()
            else:
                self.connection.rollback()
        except self.error_class:
            if ok:
                raise

    # -- dot commands -------------------------------------------------------

    def _dot_command(self, line: str, lineno: int | None) -> bool:
        """Run one dot command; return success."""
        try:
            words = shlex.split(line, comments=False, posix=True)
        except ValueError as exc:
            self._report(f"cannot parse {line}: {exc}", lineno)
            return False
        name, args = words[0][1:], words[1:]
        handler = _DOT_COMMANDS.get(name.lower())
        if handler is None:
            self._report(f"unknown command: .{name}", lineno)
            return False
        try:
            handler(self, args)
            return True
        except (ValueError, OSError) as exc:
            self._report(str(exc), lineno)
        except self.error_class as exc:
            self._after_statement("", ok=False)
            self._report(str(exc) or type(exc).__name__, lineno)
        except Exception as exc:  # noqa: BLE001 - the shell must survive engine bugs
            self.stderr.write(f"Internal error: {type(exc).__name__}: {exc}\n")
        return False

    def _catalog(self, main_only: bool = False) -> list[_CatalogEntry]:
        """Catalog rows of main, then of each schema (``pragma_database_list`` order)."""
        cursor = self.connection.cursor()
        entries: list[_CatalogEntry] = []
        try:
            schemas = ["main"] if main_only else \
                [row[0] for row in cursor.execute("SELECT name FROM pragma_database_list ORDER BY seq").fetchall()]
            for schema in schemas:
                quoted = '"' + schema.replace('"', '""') + '"'
                cursor.execute(f"SELECT type, name, tbl_name, sql FROM {quoted}.sqlite_master")
                entries.extend(_CatalogEntry(*row, schema) for row in cursor.fetchall())
        finally:
            _close_quietly(cursor)
        if not self._in_user_transaction:
            self.connection.commit()
        return entries

    def _write_lines(self, lines: Iterable[str]) -> None:
        out = self.out
        for line in lines:
            out.write(line + "\n")

    def dot_help(self, args: list[str]) -> None:
        self.out.write(_HELP)

    def dot_quit(self, args: list[str]) -> None:
        if args and not args[0].lstrip("-").isdigit():
            raise ValueError(f"not an exit code: {args[0]}")
        self.stopped = True
        self.exit_code = int(args[0]) if args else None

    def dot_tables(self, args: list[str]) -> None:
        pattern = _like_to_regex(args[0]) if args else None
        names = sorted(
            entry.shown_name for entry in self._catalog()
            if entry.type in ("table", "view") and not entry.name.startswith("sqlite_")
            and (pattern is None or pattern.fullmatch(entry.name))
        )
        self._write_lines(_columns_layout(names))

    def dot_indexes(self, args: list[str]) -> None:
        pattern = _like_to_regex(args[0]) if args else None
        names = sorted(
            entry.shown_name for entry in self._catalog()
            if entry.type == "index" and (pattern is None or pattern.fullmatch(entry.tbl_name))
        )
        self._write_lines(_columns_layout(names))

    def dot_schema(self, args: list[str]) -> None:
        pattern = _like_to_regex(args[0]) if args else None
        self._write_lines(
            entry.sql.rstrip().rstrip(";") + ";" for entry in self._catalog()
            if entry.sql and (pattern is None or pattern.fullmatch(entry.tbl_name))
        )

    def dot_mode(self, args: list[str]) -> None:
        if not args:
            self.out.write(f"current output mode: {self.settings.mode}\n")
            return
        mode = args[0].lower()
        if mode not in MODES:
            raise ValueError(f"unknown mode: {args[0]} (use one of: {', '.join(MODES)})")
        self.settings.mode = mode

    def dot_headers(self, args: list[str]) -> None:
        self.settings.headers = _parse_switch(_one_arg(args, ".headers on|off"))

    def dot_timer(self, args: list[str]) -> None:
        self.timer = _parse_switch(_one_arg(args, ".timer on|off"))

    def dot_nullvalue(self, args: list[str]) -> None:
        self.settings.nullvalue = _one_arg(args, ".nullvalue TEXT")

    def dot_separator(self, args: list[str]) -> None:
        # Backslash escapes as in the sqlite3 CLI: `.separator "\t"` is a tab.
        self.settings.separator = _unescape(_one_arg(args, ".separator SEP"))

    def dot_output(self, args: list[str]) -> None:
        target = args[0] if args else "stdout"
        self._set_output(None if target == "stdout" else target)

    def dot_read(self, args: list[str]) -> None:
        path = _one_arg(args, ".read FILE")
        if self._read_depth >= _MAX_READ_DEPTH:
            raise ValueError(f".read nested more than {_MAX_READ_DEPTH} deep")
        try:
            handle = open(path, encoding="utf-8")
        except OSError as exc:
            raise OSError(f"cannot open \"{path}\": {exc.strerror or exc}") from exc
        self._read_depth += 1
        try:
            with handle:
                # Failures inside are reported and counted there.
                self.run_lines(handle)
        finally:
            self._read_depth -= 1

    def dot_import(self, args: list[str]) -> None:
        """`.import [--csv|--parquet|--json] FILE TABLE`: bulk load with progress.

        CSV and Parquet go through pyarrow; JSON lines (``.jsonl``, ``.ndjson``,
        ``.json`` or ``--json``) into a document table, with a progress bar.
        """
        fmt = None
        rest = []
        for a in args:
            if a in ("--csv", "--parquet", "--json"):
                fmt = a[2:]
            else:
                rest.append(a)
        if len(rest) != 2:
            raise ValueError("usage: .import [--csv|--parquet|--json] FILE TABLE")
        if not hasattr(self.connection, "ingest"):
            raise ValueError(".import needs a terndb connection")
        from terndb.importer import import_file
        path, table = rest
        tty = self.stderr.isatty() if hasattr(self.stderr, "isatty") else False
        shown = [0]      # length of the progress line, to blank it at the end

        def progress(rows: int, fraction: float | None = None) -> None:
            if tty:
                bar = f"{_progress_bar(fraction)} " if fraction is not None else ""
                line = f"importing {path}: {bar}{rows:,} rows"
                shown[0] = len(line)
                self.stderr.write("\r" + line)
                self.stderr.flush()
        rows = import_file(self.connection, path, table, fmt, progress)
        if tty:
            self.stderr.write("\r" + " " * shown[0] + "\r")
        self.out.write(f"imported {rows:,} rows into {table}\n")

    def dot_dump(self, args: list[str]) -> None:
        pattern = _like_to_regex(args[0]) if args else None
        entries = [entry for entry in self._catalog(main_only=True)    # as the sqlite3 CLI: main only
                   if entry.sql and not entry.name.startswith("sqlite_")
                   and (pattern is None or pattern.fullmatch(entry.tbl_name))]
        out = self.out
        out.write("BEGIN TRANSACTION;\n")
        for entry in entries:
            if entry.type == "table":
                out.write(entry.sql.rstrip().rstrip(";") + ";\n")
                self._dump_rows(entry.name)
        for entry in entries:  # indexes, views and triggers after all tables and rows
            if entry.type != "table":
                out.write(entry.sql.rstrip().rstrip(";") + ";\n")
        out.write("COMMIT;\n")

    def _dump_rows(self, table: str) -> None:
        quoted = _quote_identifier(table)
        cursor = self.connection.cursor()
        try:
            cursor.execute(f"SELECT * FROM {quoted}")
            while True:
                chunk = cursor.fetchmany(CHUNK_ROWS)
                if not chunk:
                    break
                self.out.write("".join(
                    f"INSERT INTO {quoted} VALUES({','.join(map(_sql_literal, row))});\n"
                    for row in chunk
                ))
        finally:
            _close_quietly(cursor)

    def _set_output(self, path: str | None) -> None:
        new = None
        if path is not None:
            try:
                new = open(path, "w", encoding="utf-8")
            except OSError as exc:
                raise OSError(f"cannot open \"{path}\": {exc.strerror or exc}") from exc
        if self._out is not None:
            self._out.close()
        self._out = new


def _one_arg(args: list[str], usage: str) -> str:
    if len(args) != 1:
        raise ValueError(f"usage: {usage}")
    return args[0]


_ESCAPES = {"\\t": "\t", "\\n": "\n", "\\r": "\r", "\\\\": "\\"}


def _unescape(text: str) -> str:
    return re.sub(r"\\[tnr\\]", lambda match: _ESCAPES[match.group()], text)


def _close_quietly(cursor: Any) -> None:
    try:
        cursor.close()
    except Exception:  # noqa: BLE001 - a failing close must not hide the real result
        pass


_DOT_COMMANDS: dict[str, Callable[[Shell, list[str]], None]] = {
    "dump": Shell.dot_dump,
    "exit": Shell.dot_quit,
    "header": Shell.dot_headers,
    "headers": Shell.dot_headers,
    "help": Shell.dot_help,
    "import": Shell.dot_import,
    "indexes": Shell.dot_indexes,
    "indices": Shell.dot_indexes,
    "mode": Shell.dot_mode,
    "nullvalue": Shell.dot_nullvalue,
    "output": Shell.dot_output,
    "quit": Shell.dot_quit,
    "read": Shell.dot_read,
    "schema": Shell.dot_schema,
    "separator": Shell.dot_separator,
    "tables": Shell.dot_tables,
    "timer": Shell.dot_timer,
}


class _History:
    """readline history in a file; every step is optional and never fails the shell."""

    def __init__(self, readline: Any, path: str) -> None:
        self.readline, self.path = readline, path

    @classmethod
    def open(cls, path: str | None) -> "_History | None":
        if not path:
            return None
        try:
            import readline  # noqa: PLC0415 - absent on some platforms; optional
        except ImportError:
            return None
        path = os.path.expanduser(path)
        try:
            readline.read_history_file(path)
        except (OSError, ValueError):
            pass  # no history yet, or unreadable: start afresh
        readline.set_history_length(_HISTORY_LENGTH)
        return cls(readline, path)

    def save(self) -> None:
        try:
            self.readline.write_history_file(self.path)
        except (OSError, ValueError):
            pass
