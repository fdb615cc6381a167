"""The RADOLAN RW ESRI-ASCII reader: units, no-data, coordinates, time, CF attrs, errors."""
import io
import tarfile

import numpy as np
import pytest

from xdownscale.errors import DataError
from xdownscale.io.radolan import open_radolan, read_esri_ascii

HEADER = ("ncols         4\nnrows         3\nxllcorner     -1000\nyllcorner     -5000\ncellsize      1000\n"
          "NODATA_value  -1\n")


def _grid(rows):
    return HEADER + "\n".join(" ".join(str(v) for v in r) for r in rows) + "\n"


def _tar(path, files):
    with tarfile.open(path, "w:gz") as tar:
        for name, text in files.items():
            data = text.encode("ascii")
            info = tarfile.TarInfo(name)
            info.size = len(data)
            tar.addfile(info, io.BytesIO(data))
    return path


@pytest.fixture
def archive(tmp_path):
    first = [[-1, 0, 5, 10], [1, 2, 3, 4], [7, 8, 9, 120]]  # north row first
    second = [[0, 0, 0, 0], [-1, -1, 1, 1], [2, 2, 2, 2]]
    # stored out of time order on purpose
    return _tar(tmp_path / "RW-test.tar.gz", {"RW_20221018-0150.asc": _grid(second),
                                              "RW_20221018-0050.asc": _grid(first)})


def test_units_nodata_orientation_and_time(archive):
    rw = open_radolan(archive)
    assert rw.dims == ("time", "y", "x") and rw.shape == (2, 3, 4)
    assert str(rw.time.values[0]).startswith("2022-10-18T00:50")
    assert str(rw.time.values[1]).startswith("2022-10-18T01:50")
    # y ascending: the last stored (southern) row comes first; values in mm (0.1 mm units)
    np.testing.assert_allclose(rw.isel(time=0, y=0).values, [0.7, 0.8, 0.9, 12.0], rtol=1e-6)
    assert np.isnan(rw.isel(time=0, y=2, x=0)) and np.isnan(rw.isel(time=1, y=1, x=0))
    assert float(rw.isel(time=0, y=2, x=1)) == 0.0  # zero rain is not no-data
    np.testing.assert_allclose(rw.x.values, [-0.5, 0.5, 1.5, 2.5])  # km cell centres
    np.testing.assert_allclose(rw.y.values, [-4.5, -3.5, -2.5])
    assert rw.y.attrs["standard_name"] == "projection_y_coordinate" and rw.x.attrs["units"] == "km"
    assert rw.attrs["standard_name"] == "precipitation_amount" and rw.attrs["units"] == "mm"
    assert rw.dtype == np.float32


def test_time_selection_and_folder(archive, tmp_path):
    one = open_radolan(archive, times=[1])
    assert one.sizes["time"] == 1 and str(one.time.values[0]).startswith("2022-10-18T01:50")
    folder = tmp_path / "grids"
    folder.mkdir()
    (folder / "RW_20221018-0050.asc").write_text(_grid([[1, 2, 3, 4]] * 3))
    assert open_radolan(folder).shape == (1, 3, 4)
    assert open_radolan(folder / "RW_20221018-0050.asc").shape == (1, 3, 4)


def test_errors(tmp_path):
    with pytest.raises(DataError, match="truncated"):
        read_esri_ascii(HEADER + "1 2 3\n", "short.asc")
    with pytest.raises(DataError, match="lacks"):
        read_esri_ascii("ncols 4\n1 2 3 4\n", "bad.asc")
    bad = _tar(tmp_path / "bad.tar.gz", {"radar.asc": _grid([[1, 2, 3, 4]] * 3)})
    with pytest.raises(DataError, match="RW_YYYYMMDD-HHMM"):
        open_radolan(bad)
    other = HEADER.replace("cellsize      1000", "cellsize      2000")
    mixed = _tar(tmp_path / "mixed.tar.gz", {"RW_20221018-0050.asc": _grid([[1, 2, 3, 4]] * 3),
                                             "RW_20221018-0150.asc": other + "1 2 3 4\n" * 3})
    with pytest.raises(DataError, match="share one grid"):
        open_radolan(mixed)
    with pytest.raises(DataError, match="not found"):
        open_radolan(tmp_path / "missing.tar.gz")


def test_real_archive(data_dir):
    rw = open_radolan(data_dir / "radolan-rw" / "RW-20221018.tar.gz", times=slice(0, 1))
    assert rw.shape == (1, 900, 900)
    assert str(rw.time.values[0]).startswith("2022-10-18T00:50")
    frac = float(rw.isnull().mean())
    assert 0.05 < frac < 0.4  # the corners outside radar coverage
    assert float(rw.min()) >= 0.0 and float(rw.max()) < 200.0  # mm in one hour
    assert float(rw.x[1] - rw.x[0]) == pytest.approx(1.0) and float(rw.y[1] - rw.y[0]) == pytest.approx(1.0)
