"""Read DWD RADOLAN RW hourly radar precipitation from ESRI-ASCII grids.

The DWD open-data RW product is published as one ESRI-ASCII grid per hour
(``RW_YYYYMMDD-HHMM.asc``), often bundled in a ``.tar.gz``. Each grid holds
hourly precipitation in units of **0.1 mm**, with ``-1`` (the file's
``NODATA_value``) where there is no radar coverage. :func:`open_radolan`
returns

- a ``(time, y, x)`` float32 :class:`xarray.DataArray` named ``"rw"`` in
  **mm** (values multiplied by 0.1), no-data cells set to NaN;
- ``y``/``x`` cell-centre coordinates of the projection in **km**
  (``y`` ascending: the ESRI rows, stored north first, are flipped), with CF
  ``projection_y_coordinate``/``projection_x_coordinate`` attrs;
- ``time`` from the file names (the end of the hourly accumulation, UTC);
- CF attrs: ``standard_name="precipitation_amount"``, ``units="mm"``,
  ``cell_methods="time: sum"`` and provenance (``source``, ``references``).

Example::

    from xdownscale.io.radolan import open_radolan
    rw = open_radolan("/path/RW-20221018.tar.gz")      # (24, 900, 900)
    crop = rw.isel(y=slice(300, 556), x=slice(300, 556)).fillna(0.0)
"""
from __future__ import annotations

import re
import tarfile
from pathlib import Path

import numpy as np
import pandas as pd
import xarray as xr

from ..errors import DataError

__all__ = ["open_radolan", "read_esri_ascii"]

_NAME = re.compile(r"RW[_-]?(\d{8})[-_]?(\d{4})\.asc$", re.IGNORECASE)
_HEADER_KEYS = ("ncols", "nrows", "xllcorner", "yllcorner", "cellsize", "nodata_value")


def _parse_header(lines: list[str], name: str) -> dict:
    header = {}
    for line in lines:
        parts = line.split()
        if len(parts) != 2:
            raise DataError(f"{name}: malformed ESRI-ASCII header line {line!r}; expected 'key value'")
        header[parts[0].lower()] = float(parts[1])
    missing = [k for k in _HEADER_KEYS[:5] if k not in header]
    if missing:
        raise DataError(f"{name}: ESRI-ASCII header lacks {missing}; is this a RADOLAN .asc grid?")
    header.setdefault("nodata_value", -1.0)
    return header


def read_esri_ascii(text: str, name: str = "<grid>") -> tuple[np.ndarray, dict]:
    """Parse one ESRI-ASCII grid: ``(values (nrows, ncols) float64, header dict)``.

    Rows are returned as stored (north first); no-data cells keep the raw
    ``NODATA_value``. Raises :class:`DataError` when the header is incomplete
    or the number of values does not match ``nrows * ncols``.
    """
    lines = text.splitlines()
    n_header = 0
    while n_header < len(lines) and lines[n_header][:1].isalpha():
        n_header += 1
    header = _parse_header(lines[:n_header], name)
    nrows, ncols = int(header["nrows"]), int(header["ncols"])
    values = np.array(" ".join(lines[n_header:]).split(), dtype="float64")
    if values.size != nrows * ncols:
        raise DataError(f"{name}: {values.size} values for a {nrows}x{ncols} grid; the file is truncated")
    return values.reshape(nrows, ncols), header


def _time_from_name(name: str) -> pd.Timestamp:
    match = _NAME.search(Path(name).name)
    if not match:
        raise DataError(f"cannot read the time from file name {name!r}; expected RW_YYYYMMDD-HHMM.asc")
    return pd.Timestamp(f"{match.group(1)}T{match.group(2)[:2]}:{match.group(2)[2:]}")


def _names(path: Path) -> list[str]:
    """Names of the ``.asc`` grids in a tar archive or a folder, or the file itself."""
    if path.is_dir():
        return [p.name for p in sorted(path.glob("*.asc"))]
    if path.suffix.lower() == ".asc":
        return [path.name]
    if not tarfile.is_tarfile(path):
        raise DataError(f"{path} is neither a .asc grid, a folder of them, nor a tar archive")
    with tarfile.open(path) as tar:
        return [m.name for m in tar.getmembers() if m.isfile() and m.name.lower().endswith(".asc")]


def _read_texts(path: Path, names: list[str]) -> dict[str, str]:
    """The text of the named grids (one forward pass through a compressed archive)."""
    if path.is_dir():
        return {n: (path / n).read_text() for n in names}
    if path.suffix.lower() == ".asc":
        return {path.name: path.read_text()}
    wanted, out = set(names), {}
    with tarfile.open(path) as tar:
        for member in tar:
            if member.name in wanted:
                out[member.name] = tar.extractfile(member).read().decode("ascii")
    return out


def _coords(header: dict) -> tuple[np.ndarray, np.ndarray]:
    """Ascending y and x cell centres in km."""
    size = header["cellsize"]
    x = (header["xllcorner"] + (np.arange(int(header["ncols"])) + 0.5) * size) / 1000.0
    y = (header["yllcorner"] + (np.arange(int(header["nrows"])) + 0.5) * size) / 1000.0
    return y, x


def open_radolan(path: str | Path, *, times: slice | list | None = None) -> xr.DataArray:
    """Open RADOLAN RW ESRI-ASCII grids (a ``.tar.gz``, a folder or one ``.asc``).

    ``times`` optionally selects a subset of the files (a slice or list of
    positions, applied after sorting by time) to save parsing time. See the
    module docstring for units, coordinates and attributes.
    """
    path = Path(path)
    if not path.exists():
        raise DataError(f"RADOLAN data not found at {path}")
    names = sorted(_names(path), key=_time_from_name)
    if not names:
        raise DataError(f"no RW_*.asc grids found in {path}")
    if times is not None:
        names = names[times] if isinstance(times, slice) else [names[i] for i in times]
    texts = _read_texts(path, names)
    frames, stamps, first = [], [], None
    for name in names:
        values, header = read_esri_ascii(texts[name], name)
        if first is None:
            first = header
        elif any(header[k] != first[k] for k in _HEADER_KEYS[:5]):
            raise DataError(f"{name}: grid differs from the first file's; all RW files must share one grid")
        values = np.where(values == header["nodata_value"], np.nan, values * 0.1)
        frames.append(values[::-1].astype("float32"))  # rows north-first -> ascending y
        stamps.append(_time_from_name(name))
        del texts[name]
    y, x = _coords(first)
    da = xr.DataArray(
        np.stack(frames), dims=("time", "y", "x"), name="rw",
        coords={
            "time": ("time", pd.DatetimeIndex(stamps).values, {"standard_name": "time", "axis": "T"}),
            "y": ("y", y, {"standard_name": "projection_y_coordinate", "units": "km", "axis": "Y",
                           "long_name": "y coordinate of the RADOLAN polar stereographic projection"}),
            "x": ("x", x, {"standard_name": "projection_x_coordinate", "units": "km", "axis": "X",
                           "long_name": "x coordinate of the RADOLAN polar stereographic projection"}),
        },
        attrs={
            "standard_name": "precipitation_amount",
            "long_name": "hourly precipitation amount (RADOLAN RW, gauge-adjusted radar)",
            "units": "mm",
            "cell_methods": "time: sum (interval: 1 hour)",
            "source": "Deutscher Wetterdienst RADOLAN RW product (ESRI ASCII, 0.1 mm, -1 = no data)",
            "references": "https://opendata.dwd.de/climate_environment/CDC/grids_germany/hourly/radolan/",
            "license": "CC BY 4.0, Deutscher Wetterdienst",
        },
    )
    return da
