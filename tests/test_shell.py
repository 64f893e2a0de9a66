"""Tests of the SQL shell and the ``terndb`` command line.

The shell only needs a DB-API connection, so nearly everything here runs on
``sqlite3`` (injected); the tests that need terndb itself are skipped until
``terndb.connect`` exists.
"""
from __future__ import annotations

import io
import json
import os
import re
import sqlite3
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import pytest
from hypothesis import HealthCheck, given, settings, strategies as st

import terndb
from terndb import cli, shell as shell_module
from terndb.shell import (
    OutputSettings,
    Shell,
    Statement,
    StatementScanner,
    format_float,
    is_complete,
    scan_statements,
    split_statements,
)

REPO = Path(__file__).resolve().parents[1]


# ---------------------------------------------------------------------------
# helpers
# ---------------------------------------------------------------------------

def make_shell(connection: Any = None,
               **options: Any) -> tuple[Shell, io.StringIO, io.StringIO]:
    out, err = io.StringIO(), io.StringIO()
    conn = connection if connection is not None else sqlite3.connect(":memory:")
    settings = OutputSettings(**{key: options.pop(key) for key in
                                 ("mode", "headers", "separator", "nullvalue") if key in options})
    return Shell(conn, sqlite3.Error, stdout=out, stderr=err, settings=settings, **options), out, err


def run(script: str, **options: Any) -> tuple[str, str, Shell]:
    sh, out, err = make_shell(**options)
    sh.run_script(textwrap.dedent(script))
    return out.getvalue(), err.getvalue(), sh


def sqlite_connect(path: str, readonly: bool) -> sqlite3.Connection:
    if readonly:
        return sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    return sqlite3.connect(path)


def run_cli(argv: list[str], stdin: str = "") -> tuple[int, str, str]:
    out, err = io.StringIO(), io.StringIO()
    status = cli.main(argv, connect=sqlite_connect, error_class=sqlite3.Error,
                      stdin=io.StringIO(stdin), stdout=out, stderr=err)
    return status, out.getvalue(), err.getvalue()


SAMPLE = """\
CREATE TABLE t(n INTEGER, s TEXT, f REAL);
INSERT INTO t VALUES (1, 'ab', 2.5), (20, NULL, -1.0), (3, 'x,"y"', NULL);
"""


# ---------------------------------------------------------------------------
# statement splitting
# ---------------------------------------------------------------------------

@pytest.mark.parametrize("script, expected", [
    ("SELECT 1;", ["SELECT 1"]),
    ("SELECT 1; SELECT 2;", ["SELECT 1", "SELECT 2"]),
    ("SELECT 1;\nSELECT 2", ["SELECT 1", "SELECT 2"]),          # trailing text without ;
    ("  \n\t", []),
    ("", []),
    (";;", []),
    ("-- only a comment\n/* and another */", []),
    ("SELECT ';'; SELECT 2", ["SELECT ';'", "SELECT 2"]),
    ("SELECT 'it''s; fine';", ["SELECT 'it''s; fine'"]),          # escaped quote
    ('SELECT "a;""b";', ['SELECT "a;""b"']),
    ("SELECT `a;b`, [c;d];", ["SELECT `a;b`, [c;d]"]),
    ("SELECT 1 -- no; end here\n, 2;", ["SELECT 1 -- no; end here\n, 2"]),
    ("SELECT /* ; */ 1;", ["SELECT /* ; */ 1"]),
    ("-- lead\nSELECT 1;", ["SELECT 1"]),                          # leading comments dropped
    ("SELECT 1 - -2;", ["SELECT 1 - -2"]),
    ("SELECT 6/2;", ["SELECT 6/2"]),
    ("SELECT 'unclosed; x", ["SELECT 'unclosed; x"]),               # the database reports it
    ("SELECT 1; /* unclosed ; comment", ["SELECT 1"]),
    ("BEGIN; INSERT INTO t VALUES (1); END;", ["BEGIN", "INSERT INTO t VALUES (1)", "END"]),
])
def test_split_statements(script: str, expected: list[str]) -> None:
    assert split_statements(script) == expected


TRIGGER = """\
CREATE TRIGGER trg AFTER INSERT ON t
WHEN CASE WHEN new.a > 0 THEN 1 END
BEGIN
  INSERT INTO log VALUES ('a;b');
  UPDATE t SET b = CASE WHEN a = 1 THEN 'one' ELSE 'other' END; -- ; in comment
END"""


def test_split_keeps_trigger_bodies_whole() -> None:
    script = f"SELECT 0;\n{TRIGGER};\nSELECT 1;"
    assert split_statements(script) == ["SELECT 0", TRIGGER, "SELECT 1"]


def test_split_recognises_temp_triggers_in_any_case() -> None:
    script = "create temp trigger x before delete on t begin delete from u; select 1; end; select 2"
    assert split_statements(script) == [
        "create temp trigger x before delete on t begin delete from u; select 1; end",
        "select 2",
    ]


def test_split_does_not_treat_begin_transaction_as_a_trigger_body() -> None:
    assert split_statements("BEGIN TRANSACTION; SELECT 1; COMMIT;") == [
        "BEGIN TRANSACTION", "SELECT 1", "COMMIT"]


def test_trigger_split_matches_what_sqlite_accepts() -> None:
    conn = sqlite3.connect(":memory:")
    conn.executescript("CREATE TABLE t(a, b); CREATE TABLE log(x);")
    for statement in split_statements(f"{TRIGGER};\nINSERT INTO t VALUES (1, 2);"):
        conn.execute(statement)
    assert conn.execute("SELECT x FROM log").fetchall() == [("a;b",)]
    assert conn.execute("SELECT b FROM t").fetchall() == [("one",)]


def test_scan_statements_reports_first_token_line() -> None:
    script = "\n-- comment\nSELECT 1;\n\nSELECT\n  2; SELECT 3\n"
    assert scan_statements(script) == [
        Statement("SELECT 1", 3), Statement("SELECT\n  2", 5), Statement("SELECT 3", 6)]


SCRIPTS = [
    SAMPLE,
    f"{TRIGGER};\nSELECT 1 -- x;\n;SELECT '--;' /* ; */, \"/*\";",
    "SELECT 1 - - 2; SELECT 4/ /* c */2; SELECT 'a''b'; -- tail",
    "SELECT [x;y], `p;q` FROM t;; SELECT 'unclosed",
]


@pytest.mark.parametrize("script", SCRIPTS)
def test_feeding_one_character_at_a_time_gives_the_same_statements(script: str) -> None:
    scanner = StatementScanner()
    found: list[Statement] = []
    for char in script:
        found += scanner.feed(char)
    found += scanner.finish()
    assert found == scan_statements(script)


@pytest.mark.parametrize("text", [
    "SELECT 1;", "SELECT 1", "SELECT 1; -- done", "SELECT 1; /* open", "SELECT ';'",
    "SELECT ';';", "SELECT 'a'';'", "SELECT 1; SELECT 2", "", "  ", "-- c\n", ";",
    "/* x */ SELECT 1 /* y */ ;", "SELECT \"x;\";", "SELECT [x;];",
    "CREATE TRIGGER t AFTER INSERT ON x BEGIN SELECT 1;",
    "CREATE TRIGGER t AFTER INSERT ON x BEGIN SELECT 1; END;",
    "CREATE TEMPORARY TRIGGER t AFTER INSERT ON x BEGIN SELECT 1; END",
    "CREATE TABLE x(a); CREATE TRIGGER t AFTER INSERT ON x BEGIN",
])
def test_is_complete_agrees_with_sqlite(text: str) -> None:
    assert is_complete(text) == sqlite3.complete_statement(text)


# Pieces that exercise every scanner state: quotes opened and closed, comment
# markers, a lone - or /, trigger keywords, a non-ASCII letter.
_FRAGMENTS = ["SELECT", " ", "1", ";", "'", '"', "`", "[", "]", "--", "/*", "*/", "\n", "x",
              "-", "/", "*", "''", "CREATE", "TEMP", "TRIGGER", "BEGIN", "END", "é"]
_texts = st.lists(st.sampled_from(_FRAGMENTS), max_size=30).map("".join)


@settings(max_examples=400, deadline=None, suppress_health_check=[HealthCheck.too_slow])
@given(_texts)
def test_is_complete_agrees_with_sqlite_on_generated_text(text: str) -> None:
    # sqlite3_complete() ends a trigger at the first END; the scanner nests
    # BEGIN ... END, so texts with two BEGINs may differ by design.
    if text.upper().count("BEGIN") < 2:
        assert is_complete(text) == sqlite3.complete_statement(text)


@settings(max_examples=300, deadline=None)
@given(_texts, st.lists(st.integers(min_value=0, max_value=60), max_size=8))
def test_feeding_in_arbitrary_pieces_gives_the_same_statements(text: str, cuts: list[int]) -> None:
    scanner = StatementScanner()
    found: list[Statement] = []
    start = 0
    for cut in sorted({cut for cut in cuts if cut < len(text)}) + [len(text)]:
        found += scanner.feed(text[start:cut])
        start = cut
    assert found + scanner.finish() == scan_statements(text)


def test_is_complete_waits_for_the_end_of_a_case_inside_a_trigger() -> None:
    # sqlite3_complete() stops at the first `END;`; the scanner nests CASE ... END.
    text = "CREATE TRIGGER t AFTER INSERT ON x BEGIN UPDATE y SET a = CASE WHEN 1 THEN 2 END;"
    assert not is_complete(text)
    assert is_complete(text + " END;")


# ---------------------------------------------------------------------------
# output modes
# ---------------------------------------------------------------------------

QUERY = SAMPLE + "SELECT n, s, f FROM t;"


def test_table_mode_aligns_and_right_justifies_numbers() -> None:
    out, err, _ = run(QUERY, mode="table")
    assert err == ""
    assert out == textwrap.dedent("""\
        +----+-------+------+
        | n  |   s   |  f   |
        +----+-------+------+
        |  1 | ab    |  2.5 |
        | 20 |       | -1.0 |
        |  3 | x,"y" |      |
        +----+-------+------+
        """)


def test_box_mode_draws_unicode_frame_and_measures_wide_characters() -> None:
    out, _, _ = run("SELECT '日本' AS w, 7 AS n;", mode="box")
    assert out == textwrap.dedent("""\
        ┌──────┬───┐
        │  w   │ n │
        ├──────┼───┤
        │ 日本 │ 7 │
        └──────┴───┘
        """)


def test_grid_modes_escape_control_characters() -> None:
    out, _, _ = run("SELECT 'a' || char(10) || 'b' AS v;", mode="table")
    assert "| a\\nb |" in out


def test_table_mode_reflows_when_a_later_chunk_is_wider(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(shell_module, "CHUNK_ROWS", 2)
    out, _, _ = run("""\
        CREATE TABLE w(v TEXT);
        INSERT INTO w VALUES ('a'), ('b'), ('a much longer value');
        SELECT v FROM w;
        """, mode="table")
    assert out == textwrap.dedent("""\
        +---+
        | v |
        +---+
        | a |
        | b |
        +---+
        +---------------------+
        |          v          |
        +---------------------+
        | a much longer value |
        +---------------------+
        """)


def test_list_mode_with_headers_separator_and_nullvalue() -> None:
    out, _, _ = run(QUERY, mode="list", headers=True, separator=";", nullvalue="NULL")
    assert out == 'n;s;f\n1;ab;2.5\n20;NULL;-1.0\n3;x,"y";NULL\n'


def test_csv_mode_quotes_fields() -> None:
    out, _, _ = run(QUERY, mode="csv", headers=True)
    assert out == 'n,s,f\n1,ab,2.5\n20,,-1.0\n3,"x,""y""",\n'


def test_json_mode_outputs_one_array_per_result() -> None:
    out, _, _ = run(QUERY + "SELECT 1 AS a, 2 AS a, x'00ff' AS b, 'é' AS c;", mode="json")
    first, second = out.split("]\n")[:2]
    assert json.loads(first + "]") == [
        {"n": 1, "s": "ab", "f": 2.5},
        {"n": 20, "s": None, "f": -1.0},
        {"n": 3, "s": 'x,"y"', "f": None},
    ]
    # Duplicate names are kept (a dict would merge them), blobs are hex, text is UTF-8.
    assert second == '[{"a":1,"a":2,"b":"00FF","c":"é"}'


def test_json_mode_prints_nothing_for_no_rows() -> None:
    out, _, _ = run("SELECT 1 WHERE 0;", mode="json")
    assert out == ""


def test_line_mode() -> None:
    out, _, _ = run("SELECT 1 AS n, 'x' AS longer UNION ALL SELECT 2, NULL;", mode="line")
    assert out == "     n = 1\nlonger = x\n\n     n = 2\nlonger = \n"


def test_statements_without_rows_print_nothing() -> None:
    out, err, _ = run(SAMPLE + "UPDATE t SET n = n + 1;", mode="table")
    assert (out, err) == ("", "")


@pytest.mark.parametrize("value, text", [
    (1.0, "1.0"), (2.5, "2.5"), (-0.1, "-0.1"), (0.1 + 0.2, "0.3"),
    (1e20, "1.0e+20"), (1.5e-7, "1.5e-07"), (123456789012345.0, "123456789012345.0"),
    (float("inf"), "Inf"), (float("-inf"), "-Inf"),
])
def test_format_float_like_the_sqlite3_cli(value: float, text: str) -> None:
    assert format_float(value) == text


def test_blobs_print_as_hex_literals() -> None:
    out, _, _ = run("SELECT x'cafe';", mode="list")
    assert out == "X'CAFE'\n"


class _CountingCursor:
    """A DB-API cursor over generated rows that refuses fetchall."""

    def __init__(self, total: int) -> None:
        self.total, self.sent, self.fetch_sizes = total, 0, []
        self.description = None

    def execute(self, sql: str) -> None:
        self.description = (("n", None, None, None, None, None, None),)

    def fetchmany(self, size: int) -> list[tuple[int]]:
        self.fetch_sizes.append(size)
        count = min(size, self.total - self.sent)
        rows = [(self.sent + i,) for i in range(count)]
        self.sent += count
        return rows

    def fetchall(self) -> list[tuple[int]]:
        raise AssertionError("the shell must stream with fetchmany")

    def close(self) -> None:
        pass


class _FakeConnection:
    def __init__(self, cursor: Any) -> None:
        self._cursor = cursor
        self.commits = self.rollbacks = 0

    def cursor(self) -> Any:
        return self._cursor

    def commit(self) -> None:
        self.commits += 1

    def rollback(self) -> None:
        self.rollbacks += 1


@pytest.mark.parametrize("mode", shell_module.MODES)
def test_results_stream_in_chunks(mode: str) -> None:
    cursor = _CountingCursor(2500)
    sh, out, _ = make_shell(_FakeConnection(cursor), mode=mode)
    assert sh.execute("SELECT n FROM big")
    assert cursor.fetch_sizes == [shell_module.CHUNK_ROWS] * 4
    assert "2499" in out.getvalue()


# ---------------------------------------------------------------------------
# dot commands
# ---------------------------------------------------------------------------

CATALOG = """\
CREATE TABLE alpha(id INTEGER PRIMARY KEY, v TEXT);
CREATE TABLE beta(x);
CREATE INDEX alpha_v ON alpha(v);
CREATE INDEX beta_x ON beta(x);
CREATE VIEW gamma AS SELECT * FROM alpha;
CREATE TRIGGER alpha_t AFTER INSERT ON alpha BEGIN INSERT INTO beta VALUES (new.v); END;
INSERT INTO alpha(v) VALUES ('it''s'), (NULL);
"""


def test_tables_lists_tables_and_views_with_optional_pattern() -> None:
    out, err, _ = run(CATALOG + ".tables\n.tables a%\n.tables B_TA\n")
    assert err == ""
    first, second, third = out.splitlines()
    assert first.split() == ["alpha", "beta", "gamma"]
    assert second.split() == ["alpha"]
    assert third.split() == ["beta"]


def test_tables_lays_out_many_names_in_columns() -> None:
    script = "".join(f"CREATE TABLE table_{i:02d}(x);\n" for i in range(12)) + ".tables\n"
    out, _, _ = run(script)
    lines = out.splitlines()
    assert 1 < len(lines) < 12
    assert lines[0].split()[:2] == ["table_00", f"table_{len(lines):02d}"]  # filled top to bottom


def test_schema_prints_create_statements() -> None:
    out, _, _ = run(CATALOG + ".schema beta\n")
    assert out == "CREATE TABLE beta(x);\nCREATE INDEX beta_x ON beta(x);\n"
    out, _, _ = run(CATALOG + ".schema\n")
    assert out.count(";\n") == 6 and "CREATE VIEW gamma" in out and "alpha_t" in out


def test_indexes() -> None:
    out, _, _ = run(CATALOG + ".indexes\n.indexes alpha\n")
    assert [line.split() for line in out.splitlines()] == [["alpha_v", "beta_x"], ["alpha_v"]]


def test_dump_recreates_the_database() -> None:
    out, err, _ = run(CATALOG + "INSERT INTO beta VALUES (x'00ff'), (1.5), (-3);\n.dump\n")
    assert err == ""
    assert out.startswith("BEGIN TRANSACTION;\nCREATE TABLE alpha") and out.endswith("COMMIT;\n")
    copy = sqlite3.connect(":memory:")
    copy.executescript(out)
    assert copy.execute("SELECT * FROM alpha ORDER BY id").fetchall() == [(1, "it's"), (2, None)]
    assert copy.execute("SELECT x FROM beta ORDER BY rowid").fetchall() == [
        ("it's",), (None,), (b"\x00\xff",), (1.5,), (-3,)]
    assert copy.execute("SELECT count(*) FROM sqlite_master").fetchone() == (6,)


def test_mode_headers_nullvalue_separator_commands() -> None:
    out, err, sh = run("""\
        .mode
        .mode csv
        .headers on
        SELECT 1 AS a, NULL AS b;
        .headers off
        .mode list
        .separator "\\t"
        .nullvalue '(null)'
        SELECT 1 AS a, NULL AS b;
        """)
    assert err == ""
    assert out == "current output mode: list\na,b\n1,\n1\t(null)\n"


@pytest.mark.parametrize("command, message", [
    (".mode fancy", "Error: near line 1: unknown mode: fancy"),
    (".headers maybe", "Error: near line 1: not a boolean value: maybe"),
    (".timer", "Error: near line 1: usage: .timer on|off"),
    (".foo bar", "Error: near line 1: unknown command: .foo"),
    (".read /nonexistent/x.sql", 'Error: near line 1: cannot open "/nonexistent/x.sql"'),
    (".exit soon", "Error: near line 1: not an exit code: soon"),
    (".nullvalue 'unclosed", "Error: near line 1: cannot parse"),
])
def test_bad_dot_commands_report_one_line(command: str, message: str) -> None:
    out, err, sh = run(command + "\n")
    assert err.startswith(message) and err.count("\n") == 1
    assert sh.failed and out == ""


def test_timer_prints_run_time() -> None:
    out, _, _ = run(".timer on\nSELECT 1;\nCREATE TABLE x(a);\n.timer off\nSELECT 2;\n")
    assert re.fullmatch(r"1\nRun Time: real \d+\.\d{3} s\nRun Time: real \d+\.\d{3} s\n2\n", out)


def test_help_lists_the_commands() -> None:
    out, _, _ = run(".help\n")
    for command in (".tables", ".schema", ".mode", ".read", ".output", ".quit"):
        assert command in out


def test_quit_stops_the_script() -> None:
    out, _, sh = run("SELECT 1;\n.quit\nSELECT 2;\n")
    assert out == "1\n" and sh.finished and sh.exit_code is None


def test_read_runs_a_file_and_reports_its_line_numbers(tmp_path: Path) -> None:
    script = tmp_path / "inner.sql"
    script.write_text("SELECT 'inner';\n\nSELECT * FROM missing;\n.mode csv\n")
    out, err, sh = run(f"SELECT 'outer';\n.read {script}\nSELECT 1, 2;\n")
    assert out == "outer\ninner\n1,2\n"
    assert err == "Error: near line 3: no such table: missing\n"
    assert sh.failures == 1


def test_read_refuses_endless_recursion(tmp_path: Path) -> None:
    script = tmp_path / "self.sql"
    script.write_text(f".read {script}\n")
    _, err, sh = run(f".read {script}\n")
    assert "nested more than" in err and sh.failed


def test_output_redirects_to_a_file_and_back(tmp_path: Path) -> None:
    target = tmp_path / "out.txt"
    out, err, sh = run(f"SELECT 1;\n.output {target}\nSELECT 2;\n.output stdout\nSELECT 3;\n")
    sh.close()
    assert err == "" and out == "1\n3\n"
    assert target.read_text() == "2\n"


# ---------------------------------------------------------------------------
# errors, transactions
# ---------------------------------------------------------------------------

def test_errors_print_one_line_and_the_script_goes_on() -> None:
    out, err, sh = run("SELECT 1;\nSELECT * FROM nope;\nSELEKT 2;\nSELECT 3;\n")
    assert out == "1\n3\n"
    assert err.splitlines() == [
        "Error: near line 2: no such table: nope",
        'Error: near line 3: near "SELEKT": syntax error',
    ]
    assert sh.failures == 2


def test_bail_stops_at_the_first_error() -> None:
    out, err, sh = run("SELECT 1;\nSELECT * FROM nope;\nSELECT 3;\n", bail=True)
    assert out == "1\n" and err.count("Error:") == 1 and sh.finished


class _BrokenCursor(_CountingCursor):
    def execute(self, sql: str) -> None:
        raise ValueError("engine bug")


def test_unexpected_exceptions_are_internal_errors_not_tracebacks() -> None:
    conn = _FakeConnection(_BrokenCursor(0))
    sh, out, err = make_shell(conn)
    assert not sh.run_script("SELECT 1;\nSELECT 2;\n")
    assert err.getvalue() == "Internal error: ValueError: engine bug\n" * 2
    assert conn.rollbacks == 2 and conn.commits == 0


def test_statements_outside_a_transaction_are_committed(tmp_path: Path) -> None:
    path = str(tmp_path / "db.sqlite")
    sh, _, err = make_shell(sqlite3.connect(path))
    sh.run_script("CREATE TABLE t(a);\nINSERT INTO t VALUES (1);\n")
    other = sqlite3.connect(path)
    assert other.execute("SELECT a FROM t").fetchall() == [(1,)]
    sh.run_script("BEGIN;\nINSERT INTO t VALUES (2);\n")
    assert other.execute("SELECT count(*) FROM t").fetchone() == (1,)  # not yet committed
    sh.run_script("INSERT INTO t VALUES (3);\nROLLBACK;\nINSERT INTO t VALUES (4);\n")
    assert other.execute("SELECT a FROM t ORDER BY a").fetchall() == [(1,), (4,)]
    assert err.getvalue() == ""


def test_savepoint_rollback_to_keeps_the_transaction_open(tmp_path: Path) -> None:
    out, err, _ = run("""\
        CREATE TABLE t(a);
        BEGIN;
        INSERT INTO t VALUES (1);
        SAVEPOINT s;
        INSERT INTO t VALUES (2);
        ROLLBACK TO s;
        COMMIT;
        SELECT a FROM t;
        """)
    assert (out, err) == ("1\n", "")


# ---------------------------------------------------------------------------
# interactive loop
# ---------------------------------------------------------------------------

class _Keyboard:
    """Feeds typed lines to Shell.interact; None stands for Ctrl-C."""

    def __init__(self, *lines: str | None) -> None:
        self.lines, self.prompts = list(lines), []

    def __call__(self, prompt: str) -> str:
        self.prompts.append(prompt)
        if not self.lines:
            raise EOFError
        line = self.lines.pop(0)
        if line is None:
            raise KeyboardInterrupt
        return line


def test_interactive_prompts_continuation_and_ctrl_d() -> None:
    sh, out, err = make_shell(mode="list")
    keys = _Keyboard("SELECT", "  1 + 1", ";", "", "SELECT 'a;b'", ";", "SELECT * FROM nope;")
    sh.interact(read_line=keys, banner="hello")
    assert keys.prompts == ["terndb> ", "   ...> ", "   ...> ", "terndb> ", "terndb> ",
                            "   ...> ", "terndb> ", "terndb> "]
    assert out.getvalue() == "hello\n2\na;b\n\n"
    assert err.getvalue() == "Error: no such table: nope\n"  # no line number at the prompt


def test_interactive_ctrl_c_drops_the_pending_statement() -> None:
    sh, out, err = make_shell()
    keys = _Keyboard("SELECT 'never", None, "SELECT 2;", ".quit", "SELECT 3;")
    sh.interact(read_line=keys)
    assert out.getvalue() == "^C\n2\n"
    assert keys.prompts == ["terndb> ", "   ...> ", "terndb> ", "terndb> "]
    assert err.getvalue() == "" and sh.finished


def test_interactive_dot_commands_and_internal_errors() -> None:
    sh, out, err = make_shell(_FakeConnection(_BrokenCursor(0)))
    sh.interact(read_line=_Keyboard(".bogus", "SELECT 1;", ".mode json", ".mode"))
    assert err.getvalue() == ("Error: unknown command: .bogus\n"
                              "Internal error: ValueError: engine bug\n")
    assert out.getvalue() == "current output mode: json\n\n"


def test_interactive_history_is_optional_and_saved(tmp_path: Path,
                                                    monkeypatch: pytest.MonkeyPatch) -> None:
    pytest.importorskip("readline")
    history = tmp_path / "history"
    monkeypatch.setattr("builtins.input", _Keyboard("SELECT 1;"))
    sh, out, _ = make_shell()
    sh.interact(history_path=str(history))
    assert out.getvalue() == "1\n\n" and history.exists()
    # An unwritable history location is ignored.
    monkeypatch.setattr("builtins.input", _Keyboard("SELECT 2;"))
    sh.interact(history_path=str(tmp_path / "missing" / "dir" / "history"))
    assert out.getvalue().endswith("2\n\n")


# ---------------------------------------------------------------------------
# command line
# ---------------------------------------------------------------------------

def test_cli_runs_stdin_as_a_script(tmp_path: Path) -> None:
    db = str(tmp_path / "db")
    status, out, err = run_cli([db], stdin=SAMPLE + "SELECT n FROM t;\nSELECT * FROM nope;\n"
                               ".mode csv\nSELECT s FROM t WHERE n = 3")
    assert status == 1
    assert out == '1\n20\n3\n"x,""y"""\n'
    assert err == "Error: near line 4: no such table: nope\n"


def test_cli_sql_arguments_and_commands(tmp_path: Path) -> None:
    db = str(tmp_path / "db")
    status, out, err = run_cli(["shell", db, "-c", SAMPLE, "-c", ".mode csv",
                                "SELECT n, f FROM t ORDER BY n", "--header"])
    assert (status, err) == (0, "")
    assert out == "n,f\n1,2.5\n3,\n20,-1.0\n"
    status, out, _ = run_cli([db, "--mode", "json", "SELECT count(*) AS c FROM t"])
    assert (status, out) == (0, '[{"c":3}]\n')


def test_cli_exit_status_and_bail(tmp_path: Path) -> None:
    db = str(tmp_path / "db")
    assert run_cli([db, "SELECT 1"])[0] == 0
    status, out, err = run_cli([db, "SELECT * FROM nope; SELECT 2"])
    assert (status, out) == (1, "2\n") and err.startswith("Error:")
    status, out, _ = run_cli([db, "--bail", "SELECT * FROM nope; SELECT 2", "SELECT 3"])
    assert (status, out) == (1, "")
    status, out, _ = run_cli([db, "--bail"], stdin="SELECT 1;\nSELECT * FROM nope;\nSELECT 2;\n")
    assert (status, out) == (1, "1\n")
    assert run_cli([db, "SELECT 1", ".exit 7", "SELECT 2"])[:2] == (7, "1\n")


def test_cli_readonly(tmp_path: Path) -> None:
    db = str(tmp_path / "db")
    run_cli([db, "CREATE TABLE t(a)"])
    status, _, err = run_cli([db, "--readonly", "INSERT INTO t VALUES (1)"])
    assert status == 1 and "readonly" in err


def test_cli_timer_option(tmp_path: Path) -> None:
    status, out, _ = run_cli([str(tmp_path / "db"), "--timer", "SELECT 5"])
    assert status == 0 and re.fullmatch(r"5\nRun Time: real \d+\.\d{3} s\n", out)


def test_cli_without_path_opens_a_memory_database() -> None:
    opened = []

    def connect(path: str, readonly: bool) -> sqlite3.Connection:
        opened.append(path)
        return sqlite3.connect(path)

    status = cli.main(["shell", "-c", "SELECT 1"], connect=connect, error_class=sqlite3.Error,
                      stdin=io.StringIO(), stdout=io.StringIO(), stderr=io.StringIO())
    assert (status, opened) == (0, [":memory:"])


def test_cli_reports_a_database_that_cannot_be_opened(tmp_path: Path) -> None:
    missing = str(tmp_path / "no" / "such" / "dir" / "db")
    status, out, err = run_cli([missing, "SELECT 1"])
    assert status == 1 and out == ""
    assert err.startswith(f'Error: unable to open database "{missing}"')


def test_cli_usage_errors_and_version(capsys: pytest.CaptureFixture[str]) -> None:
    assert run_cli(["shell", "--mode", "fancy"])[0] == 2
    assert run_cli(["--version"])[0] == 0
    assert "terndb" in capsys.readouterr().out


class _ClosedPipe(io.StringIO):
    def write(self, text: str) -> int:
        raise BrokenPipeError(32, "Broken pipe")


def test_cli_stops_quietly_when_the_reader_goes_away() -> None:
    err = io.StringIO()
    status = cli.main([":memory:", "SELECT 1", "SELECT 2"], connect=sqlite_connect,
                      error_class=sqlite3.Error, stdin=io.StringIO(), stdout=_ClosedPipe(),
                      stderr=err)
    assert (status, err.getvalue()) == (1, "")


def test_cli_parse_args_accepts_options_after_positionals() -> None:
    args = cli.parse_args(["db", "SELECT 1", "--readonly", "-c", "SELECT 2", "--no-header"])
    assert (args.subcommand, args.path, args.sql, args.commands) == (
        "shell", "db", ["SELECT 1"], ["SELECT 2"])
    assert args.readonly and args.header is False


def test_cli_in_a_subprocess_with_piped_stdin(tmp_path: Path) -> None:
    """A real process, real pipes: non-TTY stdin means list mode, and the exit status."""
    code = textwrap.dedent("""\
        import sqlite3, sys
        from terndb.cli import main
        sys.exit(main(connect=lambda path, ro: sqlite3.connect(path),
                      error_class=sqlite3.Error))
        """)
    proc = subprocess.run(
        [sys.executable, "-c", code, str(tmp_path / "db")],
        input=SAMPLE + "SELECT n, s FROM t;\nSELECT * FROM nope;\n",
        capture_output=True, text=True, timeout=60,
    )
    assert proc.returncode == 1
    assert proc.stdout == '1|ab\n20|\n3|x,"y"\n'
    assert proc.stderr == "Error: near line 4: no such table: nope\n"


def test_python_m_terndb_end_to_end(tmp_path: Path) -> None:
    db = str(tmp_path / "db")
    env = dict(os.environ, HOME=str(tmp_path))
    proc = subprocess.run(
        [sys.executable, "-m", "terndb", db],
        input=SAMPLE + "SELECT n, s FROM t ORDER BY n;\n.tables\n.schema t\nSELECT * FROM nope;\n",
        capture_output=True, text=True, timeout=120, env=env, cwd=str(REPO),
    )
    assert proc.returncode == 1, proc.stderr
    lines = proc.stdout.splitlines()
    assert lines[:4] == ["1|ab", "3|x,\"y\"", "20|", "t"]
    assert lines[4].startswith("CREATE TABLE t") and lines[4].endswith(";")
    assert proc.stderr == "Error: near line 6: no such table: nope\n"
    proc = subprocess.run([sys.executable, "-m", "terndb", db, "--mode", "json",
                           "SELECT count(*) AS c FROM t"],
                          capture_output=True, text=True, timeout=120, env=env)
    assert (proc.returncode, proc.stdout, proc.stderr) == (0, '[{"c":3}]\n', "")


def test_cli_main_with_terndb_in_process(tmp_path: Path) -> None:
    out, err = io.StringIO(), io.StringIO()
    db = str(tmp_path / "db")
    status = cli.main([db, "CREATE TABLE t(a INTEGER, b TEXT)",
                       "INSERT INTO t VALUES (1, 'x')", "SELECT a, b FROM t", ".tables"],
                      stdin=io.StringIO(), stdout=out, stderr=err)
    assert (status, out.getvalue(), err.getvalue()) == (0, "1|x\nt\n", "")
