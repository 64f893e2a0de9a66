"""Compiled parts of terndb: one Cython extension, ``terndb._cext._core``."""
