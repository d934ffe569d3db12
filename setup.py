"""The optional native build of the codec's hot modules (mypyc); everything else is pyproject.toml.

A plain install (``pip install .``, CI, every developer) is pure Python and needs no compiler.
With ``MM7_MYPYC=1`` the modules in ``NATIVE_MODULES`` are compiled by mypyc (mypy must be
installed, hence ``--no-build-isolation``); the Python sources stay the reference and behave the
same. Measured in BENCHMARKS.md ("Issue 15: the codec").

    MM7_MYPYC=1 pip install --no-build-isolation .      # an installed, compiled mm7
    MM7_MYPYC=1 python setup.py build_ext --inplace      # a checkout; rm mm7/**/*.so undoes it
"""

from __future__ import annotations

import os

from setuptools import setup

#: the codec's hot path: MIME split and build, XML checks, envelope read and write
NATIVE_MODULES = [
    "mm7/core/codec.py",
    "mm7/core/emit.py",
    "mm7/core/read.py",
    "mm7/core/values.py",
    "mm7/core/xmlsafe.py",
    "mm7/core/mime/content_type.py",
    "mm7/core/mime/emit.py",
    "mm7/core/mime/multipart.py",
    "mm7/core/mime/parse.py",
    "mm7/core/mime/part.py",
    "mm7/core/mime/transfer.py",
]


def _ext_modules() -> list[object]:
    if os.environ.get("MM7_MYPYC") != "1":
        return []
    from mypyc.build import mypycify

    # group_name puts mypyc's shared runtime inside the package (mm7/core/_native__mypyc...),
    # where an installed or in-place mm7 finds it, instead of at the top level
    return list(mypycify(NATIVE_MODULES, opt_level="3", group_name="mm7.core._native"))


setup(ext_modules=_ext_modules())
