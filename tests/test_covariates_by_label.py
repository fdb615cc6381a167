"""Static covariates are taken at the fine cells by their coordinates.

One orography over a whole domain must serve a model trained or applied on any part of it, on a
trimmed or regridded fine grid; a field that does not cover the grid is refused in one line.
"""
from __future__ import annotations

import numpy as np
import pytest
import xarray as xr

import xdownscale as xds
from xdownscale.data.covariates import covariate_stats, fold_covariates, spatial_coords
from xdownscale.errors import DataError
from xdownscale.testing import synthetic_field, synthetic_statics

F = 4


@pytest.fixture(scope="module")
def fine():
    return synthetic_field("t2m", times=10, ny=32, nx=48, seed=3)


@pytest.fixture(scope="module")
def statics(fine):
    return synthetic_statics(fine)


def _fold_at(statics: xr.Dataset, part: xr.DataArray):
    stats = covariate_stats(statics)
    shape = (part.sizes["lat"], part.sizes["lon"])
    return fold_covariates(statics, stats, shape, F, spatial_coords(part, ("lat", "lon")))


def test_a_larger_field_is_cut_at_the_fine_cells_by_label(fine, statics):
    part = fine.isel(lat=slice(8, 24), lon=slice(12, 36))  # a sub-domain, whole coarse cells
    by_label = _fold_at(statics, part)
    by_hand = fold_covariates(statics.isel(lat=slice(8, 24), lon=slice(12, 36)), covariate_stats(statics),
                              (16, 24), F)
    np.testing.assert_array_equal(by_label, by_hand)
    # the same cells whichever way the covariate's axes run (descending latitude, transposed)
    flipped = statics.isel(lat=slice(None, None, -1)).transpose("lon", "lat")
    np.testing.assert_array_equal(_fold_at(flipped, part), by_hand)


def test_an_edge_without_values_warns_and_a_field_that_misses_the_grid_is_refused(fine, statics):
    part = fine.isel(lat=slice(0, 16), lon=slice(0, 24))
    short = statics.isel(lon=slice(0, 23))  # the last fine column (4 % of the cells) has no value
    with pytest.warns(UserWarning, match=r"covariate '(orog|lsm)' has no value within half a fine cell of 4\.2 %"):
        folded = _fold_at(short, part)
    stats = covariate_stats(short)
    np.testing.assert_array_equal(folded, fold_covariates(short.isel(lat=slice(0, 16)).reindex(lon=part.lon),
                                                          stats, (16, 24), F))
    elsewhere = statics.assign_coords(lon=statics.lon + 100.0)
    with pytest.raises(DataError, match=r"covariate 'orog' covers only 0 % of the fine grid by its coordinates"):
        _fold_at(elsewhere, part)


def test_a_model_predicts_a_sub_domain_from_the_whole_domains_covariates(fine, statics):
    m = xds.fit(fine, factor=F, constraint="add", covariates=statics, width=8, n_blocks=1, max_updates=4,
                batch_size=4, patch_size=16, progress=False, seed=0)
    lr = fine.downscale.coarsen(F).isel(lat=slice(2, 6), lon=slice(3, 9))
    from_whole = xds.predict(lr, model=m, covariates=statics)
    from_cut = xds.predict(lr, model=m, covariates=statics.isel(lat=slice(8, 24), lon=slice(12, 36)))
    xr.testing.assert_identical(from_whole, from_cut)
    # and the covariates did reach the network: other orography, another field
    shifted = statics.isel(lat=slice(None, None, -1)).assign_coords(lat=statics.lat)
    assert not np.allclose(xds.predict(lr, model=m, covariates=shifted).values, from_whole.values)
