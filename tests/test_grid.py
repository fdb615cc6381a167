"""Grid axes, exact area-weighted coarsening and regridding."""
from __future__ import annotations

import dask.array
import numpy as np
import pytest
import xarray as xr
from hypothesis import given, settings
from hypothesis import strategies as st

from xdownscale.errors import GridError
from xdownscale.grid import area_weights, coarsen, find_axes, regrid

LAT_ATTRS = {"standard_name": "latitude", "units": "degrees_north"}
LON_ATTRS = {"standard_name": "longitude", "units": "degrees_east"}


def latlon_field(values, lat, lon, *, lat_name="lat", lon_name="lon", attrs=True):
    values = np.asarray(values)
    dims = ("time", lat_name, lon_name)[3 - values.ndim:]
    coords = {
        lat_name: (lat_name, np.asarray(lat, dtype="float64"), LAT_ATTRS if attrs else {}),
        lon_name: (lon_name, np.asarray(lon, dtype="float64"), LON_ATTRS if attrs else {}),
    }
    return xr.DataArray(values, dims=dims, coords=coords, name="v", attrs={"units": "1"})


def area_mean(da) -> np.ndarray:
    """Area mean over the horizontal dims with the grid's own weights (float64)."""
    axes = find_axes(da)
    w = area_weights(da, axes)
    return ((da.astype("float64") * w).sum(axes.spatial) / w.sum()).values


def regular(start, step, n):
    return start + step * (np.arange(n) + 0.5)


# ------------------------------------------------------------------ find_axes


@pytest.mark.parametrize("names", [("lat", "lon"), ("latitude", "longitude"), ("nav_lat", "nav_lon")])
def test_find_axes_by_name(names):
    da = xr.DataArray(np.zeros((2, 3, 4)), dims=("time",) + names)
    axes = find_axes(da)
    assert (axes.y, axes.x, axes.time, axes.kind) == (names[0], names[1], "time", "latlon")
    assert axes.spatial == names


def test_find_axes_by_cf_attributes():
    da = xr.DataArray(
        np.zeros((2, 3, 4)),
        dims=("when", "phi", "lam"),
        coords={
            "when": ("when", np.array(["2020-01-01", "2020-01-02"], dtype="datetime64[ns]")),
            "phi": ("phi", [10.0, 11.0, 12.0], {"standard_name": "latitude"}),
            "lam": ("lam", [0.0, 1.0, 2.0, 3.0], {"units": "degrees_east"}),
        },
    )
    axes = find_axes(da)
    assert (axes.y, axes.x, axes.time, axes.kind) == ("phi", "lam", "when", "latlon")
    # units alone are enough for latitude too
    da2 = da.rename(phi="a")
    da2 = da2.assign_coords(a=("a", [10.0, 11.0, 12.0], {"units": "degrees_north"}))
    assert find_axes(da2).y == "a"
    # works on a Dataset as well
    assert find_axes(da.to_dataset(name="v")).spatial == ("phi", "lam")


def test_find_axes_projected():
    da = xr.DataArray(np.zeros((2, 5, 6)), dims=("time", "y", "x"),
                      coords={"y": np.arange(5) * 1000.0, "x": np.arange(6) * 1000.0})
    axes = find_axes(da)
    assert (axes.y, axes.x, axes.kind) == ("y", "x", "projected")
    np.testing.assert_array_equal(area_weights(da, axes).values, np.ones((5, 6)))
    # CF axis attributes on other names
    da2 = xr.DataArray(
        np.zeros((5, 6)), dims=("northing", "easting"),
        coords={"northing": ("northing", np.arange(5.0), {"axis": "Y"}),
                "easting": ("easting", np.arange(6.0), {"standard_name": "projection_x_coordinate"})},
    )
    axes2 = find_axes(da2)
    assert (axes2.y, axes2.x, axes2.time, axes2.kind) == ("northing", "easting", None, "projected")


def test_find_axes_unknown_dims_error():
    da = xr.DataArray(np.zeros((3, 4)), dims=("i", "j"))
    with pytest.raises(GridError) as info:
        find_axes(da)
    msg = str(info.value)
    assert "('i', 'j')" in msg and "rename" in msg.lower() and "lat" in msg


# ------------------------------------------------------------------ coarsen: exact values


def test_coarsen_equals_hand_computed_coslat_mean():
    lat = np.array([10.0, 30.0, 50.0, 70.0])
    lon = np.array([0.0, 1.0, 2.0, 3.0])
    vals = np.arange(16, dtype="float64").reshape(4, 4)
    out = coarsen(latlon_field(vals, lat, lon), 2)
    c = np.cos(np.deg2rad(lat))
    expected = np.empty((2, 2))
    for i in range(2):
        for j in range(2):
            blk = vals[2 * i:2 * i + 2, 2 * j:2 * j + 2]
            w = np.repeat(c[2 * i:2 * i + 2, None], 2, axis=1)
            expected[i, j] = (blk * w).sum() / w.sum()
    np.testing.assert_allclose(out.values, expected, rtol=0, atol=1e-13)
    # the weighting matters: the plain mean differs
    assert not np.allclose(out.values, vals.reshape(2, 2, 2, 2).mean(axis=(1, 3)))
    np.testing.assert_allclose(out["lat"].values, [20.0, 60.0])
    np.testing.assert_allclose(out["lon"].values, [0.5, 2.5])
    assert out.attrs["cell_methods"] == "area: mean" and out.attrs["units"] == "1"
    assert out.name == "v" and out.dims == ("lat", "lon")


def test_coarsen_projected_is_plain_block_mean():
    rng = np.random.default_rng(1)
    vals = rng.normal(size=(2, 6, 9))
    da = xr.DataArray(vals, dims=("time", "y", "x"), coords={"y": np.arange(6.0), "x": np.arange(9.0)})
    out = coarsen(da, 3)
    np.testing.assert_allclose(out.values, vals.reshape(2, 2, 3, 3, 3).mean(axis=(2, 4)), atol=1e-14)


@st.composite
def grids(draw):
    factor = draw(st.integers(2, 5))
    ny_c, nx_c = draw(st.integers(1, 6)), draw(st.integers(1, 6))
    ny, nx = ny_c * factor, nx_c * factor
    dlat = draw(st.floats(0.05, 150.0 / ny))
    lat0 = draw(st.floats(-89.0, 89.0 - ny * dlat))
    dlon = draw(st.floats(0.05, 360.0 / nx))
    lon_convention = draw(st.sampled_from(["0..360", "-180..180"]))
    lo, hi = (0.0, 360.0) if lon_convention == "0..360" else (-180.0, 180.0)
    lon0 = draw(st.floats(lo, hi - nx * dlon))
    descending = draw(st.booleans())
    nt = draw(st.integers(1, 2))
    seed = draw(st.integers(0, 2**31 - 1))
    return factor, ny, nx, regular(lat0, dlat, ny), regular(lon0, dlon, nx), descending, nt, seed


@settings(max_examples=60, deadline=None)
@given(grids())
def test_coarsen_conserves_area_mean(grid):
    factor, ny, nx, lat, lon, descending, nt, seed = grid
    if descending:
        lat = lat[::-1]
    vals = np.random.default_rng(seed).normal(10.0, 3.0, size=(nt, ny, nx))
    da = latlon_field(vals, lat, lon)
    out = coarsen(da, factor)
    assert out.shape == (nt, ny // factor, nx // factor) and out.dtype == np.float64
    np.testing.assert_allclose(area_mean(out), area_mean(da), rtol=0, atol=1e-12 * np.abs(vals).max())
    # coarse coordinates are the block centres, keeping the latitude order
    np.testing.assert_allclose(out["lat"].values, lat.reshape(-1, factor).mean(axis=1), atol=1e-9)
    np.testing.assert_allclose(out["lon"].values, lon.reshape(-1, factor).mean(axis=1), atol=1e-9)


def test_coarsen_both_latitude_orders_agree(synthetic_field):
    up = synthetic_field(nt=2, ny=12, nx=12, dtype="float64")
    down = up.isel(lat=slice(None, None, -1))
    a, b = coarsen(up, 3), coarsen(down, 3)
    xr.testing.assert_allclose(a, b.isel(lat=slice(None, None, -1)), rtol=1e-14)


def test_coarse_coordinates_are_block_centres(synthetic_field):
    da = synthetic_field(nt=1, ny=12, nx=16, lat_descending=True)
    out = coarsen(da, 4)
    np.testing.assert_allclose(out["lat"].values, da["lat"].values.reshape(3, 4).mean(axis=1))
    np.testing.assert_allclose(out["lon"].values, da["lon"].values.reshape(4, 4).mean(axis=1))
    assert out["lat"].attrs == da["lat"].attrs and out["lon"].attrs["units"] == "degrees_east"
    assert out["lat"].values[0] > out["lat"].values[-1]
    assert out.dtype == np.float32  # keeps the input float dtype


@pytest.mark.parametrize("lon", [
    [177.5, 178.5, 179.5, -179.5, -178.5, -177.5],  # -180..180, regional grid across the antimeridian
    [357.5, 358.5, 359.5, 0.5, 1.5, 2.5],  # 0..360 across the Greenwich seam
])
def test_coarse_longitudes_across_the_seam(lon):
    """A block straddling the longitude seam is centred on the seam, not on the far side of the globe."""
    lon = np.asarray(lon)
    da = latlon_field(np.ones((2, 6)), regular(40.0, 1.0, 2), lon)
    out = coarsen(da, 2)
    expected = np.array([lon[0] + 0.5, lon[2] + 0.5, lon[4] + 0.5])  # 178, 180, -178 / 358, 360, 2
    diff = (out["lon"].values - expected + 180.0) % 360.0 - 180.0
    np.testing.assert_allclose(diff, 0.0, atol=1e-9)


# ------------------------------------------------------------------ coarsen: NaN, sizes, dask


def test_coarsen_skips_nan_cells():
    lat = regular(40.0, 5.0, 4)
    lon = regular(0.0, 1.0, 4)
    rng = np.random.default_rng(3)
    vals = rng.normal(size=(4, 4))
    vals[0, 0] = np.nan  # block (0, 0): 3 valid cells
    vals[2:4, 2:4] = np.nan  # block (1, 1): no valid cell
    out = coarsen(latlon_field(vals, lat, lon), 2).values
    w = np.cos(np.deg2rad(lat))[:, None] * np.ones((1, 4))
    blk, wb = vals[0:2, 0:2], w[0:2, 0:2]
    ok = ~np.isnan(blk)
    np.testing.assert_allclose(out[0, 0], (blk[ok] * wb[ok]).sum() / wb[ok].sum(), atol=1e-14)
    assert np.isnan(out[1, 1])
    assert np.isfinite(out[0, 1]) and np.isfinite(out[1, 0])


def test_coarsen_skipna_false_propagates_nan():
    """With skipna=False a block holding any NaN is NaN (not the valid cells' sum over all weights)."""
    lat, lon = regular(40.0, 5.0, 4), regular(0.0, 1.0, 4)
    vals = np.random.default_rng(3).normal(size=(4, 4))
    vals[0, 0] = np.nan
    out = coarsen(latlon_field(vals, lat, lon), 2, skipna=False).values
    assert np.isnan(out[0, 0])
    assert np.isfinite(out[[0, 1, 1], [1, 0, 1]]).all()


def test_coarsen_non_divisible_error_and_trim():
    lat, lon = regular(40.0, 1.0, 7), regular(0.0, 1.0, 10)
    da = latlon_field(np.random.default_rng(0).normal(size=(7, 10)), lat, lon)
    with pytest.raises(GridError) as info:
        coarsen(da, 3)
    msg = str(info.value)
    assert "lat=7" in msg and "lon=10" in msg and "3" in msg and "trim=True" in msg
    out = coarsen(da, 3, trim=True)
    assert out.shape == (2, 3)
    xr.testing.assert_allclose(out, coarsen(da.isel(lat=slice(0, 6), lon=slice(0, 9)), 3))


@pytest.mark.parametrize("factor", [0, -2, 2.5, "2"])
def test_coarsen_bad_factor(factor):
    da = latlon_field(np.zeros((4, 4)), regular(0, 1, 4), regular(0, 1, 4))
    with pytest.raises(GridError, match="factor"):
        coarsen(da, factor)


def test_coarsen_is_lazy_on_dask(synthetic_field):
    da = synthetic_field(nt=3, ny=16, nx=24, dtype="float64")
    da[0, :3, :5] = np.nan
    lazy = da.chunk({"time": 1, "lat": 8, "lon": 12})
    out = coarsen(lazy, 4)
    assert isinstance(out.data, dask.array.Array)
    eager = coarsen(da, 4)
    xr.testing.assert_allclose(out.compute(), eager, rtol=1e-14)


# ------------------------------------------------------------------ regrid


def test_regrid_auto_on_nested_target_equals_coarsen(synthetic_field):
    da = synthetic_field(nt=2, ny=12, nx=18, lat_descending=True)
    target = coarsen(da, 3).isel(time=0, drop=True).to_dataset(name="target")
    out = regrid(da, target)
    xr.testing.assert_identical(out, coarsen(da, 3))
    # a DataArray target and the explicit block backend too
    xr.testing.assert_identical(regrid(da, target["target"], backend="block"), coarsen(da, 3))


def test_regrid_block_backend_rejects_non_nested(synthetic_field):
    da = synthetic_field(nt=1, ny=12, nx=12)
    target = xr.Dataset(coords={"lat": ("lat", regular(30.0, 30.0 / 5, 5), LAT_ATTRS),
                                "lon": ("lon", regular(-10.0, 30.0 / 5, 5), LON_ATTRS)})
    with pytest.raises(GridError, match="xarray-regrid"):
        regrid(da, target, backend="block")
    with pytest.raises(GridError, match="backend"):
        regrid(da, target, backend="cubic-spline")


def test_regrid_xarray_regrid_conserves_area_mean(synthetic_field):
    # source: 1 deg over [30, 60] x [-10, 20]; target: 2.5 deg over the same domain (not nested)
    da = synthetic_field(nt=2, ny=30, nx=30, offset=5.0, amplitude=10.0, dtype="float64")
    target = xr.Dataset(coords={"lat": ("lat", regular(30.0, 2.5, 12), LAT_ATTRS),
                                "lon": ("lon", regular(-10.0, 2.5, 12), LON_ATTRS)})
    out = regrid(da, target)
    assert out.sizes["lat"] == 12 and out.sizes["lon"] == 12 and out.sizes["time"] == 2
    np.testing.assert_allclose(out["lat"].values, target["lat"].values)
    assert np.isfinite(out.values).all()
    src_mean, out_mean = area_mean(da), area_mean(out)
    np.testing.assert_allclose(out_mean, src_mean, rtol=1e-3)
    assert out.attrs["units"] == "K"


def test_regrid_xarray_regrid_latitude_found_by_cf_attributes(synthetic_field):
    """A latitude found through CF attributes (not named lat/latitude) gets the same
    spherical (cos-latitude) weighting as one named 'lat': the result must not depend on the name."""
    da = synthetic_field(nt=1, ny=40, nx=30, lat_range=(0.0, 80.0), lon_range=(0.0, 60.0), dtype="float64")
    target = xr.Dataset(coords={"lat": ("lat", regular(0.0, 5.0, 16), LAT_ATTRS),
                                "lon": ("lon", regular(0.0, 5.0, 12), LON_ATTRS)})
    by_name = regrid(da, target, backend="xarray-regrid")
    renamed = da.rename(lat="phi", lon="lam")
    by_attrs = regrid(renamed, target.rename(lat="phi", lon="lam"), backend="xarray-regrid")
    assert find_axes(renamed).spatial == ("phi", "lam")
    np.testing.assert_allclose(by_attrs.values, by_name.values, rtol=1e-10)


# ------------------------------------------------------------------ CF metadata through cf-xarray
def test_bounds_from_centres_follows_cf_xarray_add_bounds():
    """The numpy bounds rule is cf-xarray's ``add_bounds`` (ascending, descending, irregular)."""
    import cf_xarray  # noqa: F401

    from xdownscale.grid.cf import bounds_from_centres

    for c in ([0.5, 1.5, 2.5, 3.5], [60.0, 50.0, 40.0], [0.0, 1.0, 3.0, 7.0], [359.5, 0.5, 1.5][1:]):
        ref = xr.Dataset(coords={"c": ("c", c)}).cf.add_bounds("c", output_dim="b")["c_bounds"]
        np.testing.assert_allclose(bounds_from_centres(np.asarray(c)), ref.transpose("c", "b").values)
    np.testing.assert_allclose(bounds_from_centres(np.array([5.0])), [[4.5, 5.5]])  # cf-xarray needs two


def test_find_axes_reads_cf_attributes_that_name_lists_miss():
    """_CoordinateAxisType (THREDDS/NcML), long_name and a CF time coordinate along another dim
    (cfgrib's ``valid_time`` on ``step``) are recognised through cf-xarray."""
    da = xr.DataArray(
        np.zeros((2, 3, 4)), dims=("lead", "a", "b"),
        coords={"a": ("a", [10.0, 11.0, 12.0], {"_CoordinateAxisType": "Lat"}),
                "b": ("b", [0.0, 1.0, 2.0, 3.0], {"long_name": "longitude"}),
                "lead": ("lead", [0.0, 6.0]),
                "vt": ("lead", np.array(["2020-01-01T00", "2020-01-01T06"], dtype="datetime64[ns]"),
                       {"standard_name": "time"})},
    )
    axes = find_axes(da)
    assert (axes.y, axes.x, axes.time, axes.kind) == ("a", "b", "lead", "latlon")
    # projected axes by grads_dim / grid_latitude standard names
    p = xr.DataArray(np.zeros((3, 4)), dims=("north", "east"),
                     coords={"north": ("north", np.arange(3.0), {"standard_name": "grid_latitude"}),
                             "east": ("east", np.arange(4.0), {"grads_dim": "x"})})
    assert find_axes(p).spatial == ("north", "east") and find_axes(p).kind == "projected"


@pytest.mark.realdata
def test_find_axes_on_cfgrib_fields(data_dir):
    pytest.importorskip("cfgrib")
    ds = xr.open_dataset(data_dir / "meteonet-nw" / "arpege_2m_NW_20180501000000.grib", engine="cfgrib",
                         backend_kwargs={"indexpath": ""})
    axes = find_axes(ds["t2m"])
    assert (axes.y, axes.x, axes.time, axes.kind) == ("latitude", "longitude", "step", "latlon")
    assert ds["latitude"][0] > ds["latitude"][-1]  # descending latitude


def test_cell_vertices_descending_latitude_and_0_360_longitude():
    from xdownscale.grid.cf import cell_vertices

    da = latlon_field(np.zeros((3, 4)), [60.0, 50.0, 40.0], [45.0, 135.0, 225.0, 315.0])
    np.testing.assert_allclose(cell_vertices(da, "lat", is_latitude=True), [65.0, 55.0, 45.0, 35.0])
    np.testing.assert_allclose(cell_vertices(da, "lon"), [0.0, 90.0, 180.0, 270.0, 360.0])
    polar = latlon_field(np.zeros((2, 4)), [-60.0, -90.0], [45.0, 135.0, 225.0, 315.0])
    np.testing.assert_allclose(cell_vertices(polar, "lat", is_latitude=True), [-45.0, -75.0, -90.0])  # clipped


def test_bounds_variable_is_found_by_cf_attribute_or_encoding():
    from xdownscale.grid.cf import cell_bounds

    ds = latlon_field(np.zeros((3, 4)), [60.0, 50.0, 40.0], [0.0, 1.0, 2.0, 3.0]).to_dataset()
    ds["my_lat_edges"] = (("lat", "nv"), [[62.0, 55.0], [55.0, 44.0], [44.0, 30.0]])
    ds["lat"].attrs["bounds"] = "my_lat_edges"
    np.testing.assert_allclose(cell_bounds(ds, "lat", True), [[62.0, 55.0], [55.0, 44.0], [44.0, 30.0]])
    del ds["lat"].attrs["bounds"]
    ds["lat"].encoding["bounds"] = "my_lat_edges"  # where xarray puts it with decode_coords="all"
    np.testing.assert_allclose(cell_bounds(ds, "lat", True)[0], [62.0, 55.0])


def test_area_weights_use_a_cf_cell_measures_variable():
    """With ``cell_measures: area: areacella`` on the field, the provider's cell areas weight the
    coarsening (here: areas that are not cos(lat)), otherwise cos(lat)."""
    lat, lon = [10.0, 30.0], [0.0, 1.0, 2.0, 3.0]
    area = np.array([[1.0, 1.0, 3.0, 3.0], [2.0, 2.0, 2.0, 2.0]])
    da = latlon_field(np.array([[1.0, 2.0, 3.0, 4.0], [5.0, 6.0, 7.0, 8.0]]), lat, lon)
    da = da.assign_coords(areacella=(("lat", "lon"), area, {"standard_name": "cell_area", "units": "m2"}))
    da.attrs["cell_measures"] = "area: areacella"
    np.testing.assert_array_equal(area_weights(da).values, area)
    out = coarsen(da, 2)
    expected = (1 * 1 + 2 * 1 + 5 * 2 + 6 * 2) / 6.0, (3 * 3 + 4 * 3 + 7 * 2 + 8 * 2) / 10.0
    np.testing.assert_allclose(out.values.ravel(), expected)
    plain = da.drop_vars("areacella")
    plain.attrs = {"units": "1"}
    np.testing.assert_allclose(area_weights(plain).values[:, 0], np.cos(np.deg2rad(lat)))


def test_grid_mapping_found_with_cf_xarray_in_attrs_or_encoding(tmp_path):
    from xdownscale.grid.cf import grid_mapping
    from xdownscale.io import write

    crs = xr.DataArray(0, attrs={"grid_mapping_name": "polar_stereographic",
                                 "straight_vertical_longitude_from_pole": 10.0,
                                 "latitude_of_projection_origin": 90.0, "standard_parallel": 60.0})
    da = xr.DataArray(np.ones((4, 5), "float32"), dims=("y", "x"), name="pr",
                      coords={"y": ("y", np.arange(4) * 1000.0, {"units": "m"}),
                              "x": ("x", np.arange(5) * 1000.0, {"units": "m"}), "crs": crs},
                      attrs={"grid_mapping": "stereo_missing"})
    assert grid_mapping(da) == "stereo_missing"  # names a variable that is not there: the attribute as is
    da.attrs["grid_mapping"] = "crs"
    assert grid_mapping(da) == "crs"
    p = write(da, tmp_path / "a.nc")
    with xr.open_dataset(p, decode_coords="all") as ds:  # grid_mapping moves to encoding
        assert "grid_mapping" not in ds["pr"].attrs and grid_mapping(ds["pr"]) == "crs"
        assert grid_mapping(ds) == "crs"
        q = write(ds["pr"], tmp_path / "b.nc")  # and is written again
    with xr.open_dataset(q) as ds:
        assert ds["pr"].attrs["grid_mapping"] == "crs" and ds["crs"].attrs["grid_mapping_name"] == "polar_stereographic"
