"""Statement parameters: numbering placeholders the way SQLite does, in source order.

The planner compiles clauses out of textual order (WHERE before the SELECT
list), so slots cannot be handed out during compilation.  Instead the SQL
text is tokenised once, every placeholder (``?``, ``?NNN``, ``:name``,
``$name``, ``@name``) is numbered by SQLite's rules, and each is rewritten to
a slot-named placeholder ``:__sK`` that the compiler maps straight to slot K.
Binding values to slots (with type adaptation) is the driver's business;
``bind_plain`` is the engine's own binder for already-adapted values.
"""
from __future__ import annotations

from typing import Any, Iterable, Mapping, Sequence

from sqlglot.errors import TokenError

from .errors import ParameterError, SQLSyntaxError

#: SQLite's default SQLITE_MAX_VARIABLE_NUMBER.
MAX_PARAMETER_NUMBER = 32766

_NAME_PREFIXES = (":", "$", "@")


class ParamSpec:
    """The parameter slots of one statement, built once by the planner.

    ``names[i]`` is slot i's name with its prefix (``':a'``), or None for a
    ``?``/``?NNN`` slot; ``marker_slots[j]`` is the slot the j-th placeholder
    (in source order) reads.
    """

    __slots__ = ("names", "marker_slots", "count", "_keys", "_has_names")

    def __init__(self, names: Sequence[str | None], marker_slots: Sequence[int]) -> None:
        self.names: tuple[str | None, ...] = tuple(names)
        self.marker_slots: tuple[int, ...] = tuple(marker_slots)
        self.count: int = len(self.names)
        # Mapping keys drop the prefix: ':a', '$a' and '@a' all read 'a'.
        self._keys = tuple(None if n is None else n[1:] for n in self.names)
        self._has_names = any(n is not None for n in self.names)

    EMPTY: "ParamSpec"

    @classmethod
    def from_markers(cls, markers: Iterable[str]) -> "ParamSpec":
        """Number placeholders by SQLite's rules; markers in source order."""
        names: list[str | None] = []
        slot_of_name: dict[str, int] = {}
        marker_slots: list[int] = []
        for marker in markers:
            slot = _slot_for_marker(marker, names, slot_of_name)
            marker_slots.append(slot)
        return cls(names, marker_slots)

    def __repr__(self) -> str:
        return f"ParamSpec(names={self.names!r}, marker_slots={self.marker_slots!r})"

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, ParamSpec):
            return NotImplemented
        return (self.names, self.marker_slots) == (other.names, other.marker_slots)

    def __hash__(self) -> int:
        return hash((self.names, self.marker_slots))


ParamSpec.EMPTY = ParamSpec((), ())


def _slot_for_marker(marker: str, names: list[str | None],
                     slot_of_name: dict[str, int]) -> int:
    """The 0-based slot of one placeholder, growing ``names`` as needed."""
    if marker == "?":
        names.append(None)
        return len(names) - 1
    if marker.startswith("?"):
        return _numbered_slot(marker, names)
    if marker[:1] in _NAME_PREFIXES and len(marker) > 1:
        slot = slot_of_name.get(marker)
        if slot is None:
            names.append(marker)
            slot = slot_of_name[marker] = len(names) - 1
        return slot
    raise ParameterError(f"not a parameter placeholder: {marker!r}")


def _numbered_slot(marker: str, names: list[str | None]) -> int:
    digits = marker[1:]
    if not digits.isdigit() or not digits.isascii():
        raise ParameterError(f"not a parameter placeholder: {marker!r}")
    number = int(digits)
    if not 1 <= number <= MAX_PARAMETER_NUMBER:
        raise ParameterError(
            f"variable number must be between ?1 and ?{MAX_PARAMETER_NUMBER}: {marker}")
    if number > len(names):
        names.extend([None] * (number - len(names)))
    # A ?NNN naming an existing named slot shares it (SQLite allows that);
    # the slot keeps its name.
    return number - 1



SLOT_PREFIX = "__s"
_MARKER_CHARS = frozenset("?:$@")


def rewrite_placeholders(sql: str) -> tuple[str, ParamSpec]:
    """(SQL with placeholders renamed to ``:__sK``, the statement's ParamSpec)."""
    if not any(ch in _MARKER_CHARS for ch in sql):
        return sql, ParamSpec.EMPTY
    from .sqlparse import TernDialect
    try:
        tokens = TernDialect().tokenize(sql)
    except TokenError as err:
        raise SQLSyntaxError(f"unrecognized token in SQL: {err}") from err
    spans: list[tuple[int, int, str]] = []
    i = 0
    n = len(tokens)
    while i < n:
        tok = tokens[i]
        kind = tok.token_type.name
        nxt = tokens[i + 1] if i + 1 < n else None
        adjacent = nxt is not None and nxt.start == tok.end + 1
        if kind == "PLACEHOLDER" and tok.text == "?":
            if adjacent and nxt.token_type.name == "NUMBER" and nxt.text.isdigit():
                spans.append((tok.start, nxt.end, "?" + nxt.text))
                i += 2
                continue
            spans.append((tok.start, tok.end, "?"))
        elif kind == "COLON" and adjacent and nxt.token_type.name in ("VAR", "NUMBER") :
            spans.append((tok.start, nxt.end, ":" + nxt.text))
            i += 2
            continue
        elif kind == "PARAMETER" and tok.text == "@" and adjacent and nxt.token_type.name == "VAR":
            spans.append((tok.start, nxt.end, "@" + nxt.text))
            i += 2
            continue
        elif kind == "VAR" and tok.text.startswith("$") and len(tok.text) > 1:
            spans.append((tok.start, tok.end, tok.text))
        i += 1
    if not spans:
        return sql, ParamSpec.EMPTY
    spec = ParamSpec.from_markers(m for _s, _e, m in spans)
    out = []
    pos = 0
    for (start, end, _m), slot in zip(spans, spec.marker_slots):
        out.append(sql[pos:start])
        out.append(f":{SLOT_PREFIX}{slot}")
        pos = end + 1
    out.append(sql[pos:])
    return "".join(out), spec


def slot_of(name: str) -> int:
    """The slot of a rewritten placeholder name (``__sK`` -> K)."""
    if not name.startswith(SLOT_PREFIX) or not name[len(SLOT_PREFIX):].isdigit():
        raise ParameterError(f"unexpected parameter name: {name}")
    return int(name[len(SLOT_PREFIX):])


def bind_plain(spec: ParamSpec, params: Any) -> tuple:
    """Orders already-adapted values into slots (sequence or mapping), checking the count."""
    if params is None:
        params = ()
    if isinstance(params, Mapping):
        values = []
        for slot, key in enumerate(spec._keys, 1):
            if key is None:
                raise ParameterError(f"Binding {slot} has no name, but you supplied a dictionary (which has only names).")
            try:
                values.append(params[key])
            except KeyError:
                raise ParameterError(f"You did not supply a value for binding parameter {spec.names[slot - 1]}.") from None
        return tuple(values)
    if len(params) != spec.count:
        raise ParameterError(f"Incorrect number of bindings supplied. The current statement uses "
                             f"{spec.count}, and there are {len(params)} supplied.")
    return tuple(params)
