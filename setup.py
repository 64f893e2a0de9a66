"""Build script: compiles the Cython executor into ``terndb._cext._core``.

All compiled code is one extension module made of ``cext/_core.pyx`` and the
``.pxi`` parts it includes (the asyncpg/pyarrow layout), which avoids dotted
cimports across the custom package-dir mapping.
"""
from Cython.Build import cythonize
from setuptools import Extension, setup

extensions = [
    Extension(
        "terndb._cext._core",
        ["cext/_core.pyx"],
        extra_compile_args=["-O2"],
    )
]

setup(
    ext_modules=cythonize(
        extensions,
        compiler_directives={
            "language_level": 3,
            "boundscheck": False,
            "wraparound": False,
            "cdivision": True,
            "initializedcheck": False,
        },
        # Rebuild when any included .pxi changes.
        include_path=["cext"],
    )
)
