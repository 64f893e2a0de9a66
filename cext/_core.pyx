# cython: language_level=3
"""terndb's compiled core: codecs, SQLite value semantics, functions, executor.

One extension module assembled from ``.pxi`` parts, each with one job:

* ``keycodec.pxi``  - order-preserving (memcmp-sortable) key encoding
* ``rowcodec.pxi``  - compact row records
* ``values.pxi``    - SQLite value semantics: affinity, comparison, arithmetic, CAST
* ``functions.pxi`` - SQLite scalar and aggregate functions
"""
COMPILED = True
