"""The compiled extension is the one in use, not a pure-Python fallback.

A fallback that silently replaced the Cython core would keep every
functional test green while making the engine many times slower, so this
checks the mechanics directly: the module is a shared object, it says it is
compiled, and the executor's classes are static extension types whose
methods are C descriptors rather than Python functions.
"""
from __future__ import annotations

import importlib.machinery
import types

import pytest

import terndb
from terndb._cext import _core

# Py_TPFLAGS_HEAPTYPE: set on every class created by a ``class`` statement in
# Python; Cython's cdef classes are statically allocated C types without it.
_HEAPTYPE = 1 << 9

EXECUTOR_CLASSES = ["TableScan", "IndexScan", "Filter", "HashAggregate",
                    "NestedLoopJoin", "HashJoin", "Limit", "ChangeCollector",
                    "ColRef", "Compare"]


def test_core_is_a_shared_object() -> None:
    path = _core.__file__
    assert path is not None
    assert any(path.endswith(suffix) for suffix in importlib.machinery.EXTENSION_SUFFIXES), path
    assert isinstance(_core.__loader__, importlib.machinery.ExtensionFileLoader)


def test_core_declares_itself_compiled() -> None:
    assert _core.COMPILED is True


def test_driver_uses_this_core() -> None:
    # The package the driver imports is the same module object checked above.
    assert terndb._cext._core is _core


@pytest.mark.parametrize("name", EXECUTOR_CLASSES)
def test_executor_classes_are_extension_types(name: str) -> None:
    cls = getattr(_core, name)
    assert isinstance(cls, type)
    assert not cls.__flags__ & _HEAPTYPE, f"{name} is a Python class"
    # Methods defined in C are method descriptors / slot wrappers, never functions.
    methods = [v for k, v in vars(cls).items() if not k.startswith("__") and callable(v)]
    assert not any(isinstance(m, types.FunctionType) for m in methods), name


def test_sessions_execute_through_extension_operators(tcon) -> None:
    """A query's plan is built from the extension's operator types."""
    tcon.execute("CREATE TABLE t(a INTEGER)")
    tcon.execute("INSERT INTO t VALUES (1)")
    tcon.commit()
    assert tcon.execute("SELECT a FROM t WHERE a = 1").fetchall() == [(1,)]
    plan = tcon._session.plans["SELECT a FROM t WHERE a = 1"]
    root = plan.query.root
    assert type(root).__module__ == _core.__name__
    assert not type(root).__flags__ & _HEAPTYPE
