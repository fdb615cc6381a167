"""Import-order workaround for a native-library clash between ecCodes and PROJ.

The ecCodes wheels (eckitlib) bundle their own libproj (and sqlite, curl).
Once they are loaded, a later ``import pyproj`` (cartopy, for maps) finds no
PROJ database and the interpreter can abort at exit ("double free or
corruption"). ecCodes is loaded by cfgrib, and by any ``xr.open_dataset``
without ``engine=`` (xarray asks every installed backend). Loading pyproj's
PROJ first avoids the clash; it is a no-op where pyproj is not installed.
"""
from __future__ import annotations

import contextlib


def import_pyproj_first() -> None:
    with contextlib.suppress(Exception):
        import pyproj  # noqa: F401
