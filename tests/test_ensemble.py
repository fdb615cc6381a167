"""Probabilistic evaluation of ensembles: CRPS against properscoring, rank-histogram flatness,
log spectral distance, `evaluate(member_dim=...)`, seeded noise and the ensemble plots."""
import numpy as np
import pytest
import xarray as xr

import xdownscale as xds
from xdownscale.ensemble import seeded_noise
from xdownscale.errors import DataError
from xdownscale.metrics import (
    crps_ensemble,
    log_spectral_distance,
    rank_flatness,
    rank_histogram,
)
from xdownscale.testing import synthetic_field


def _ensemble(truth, members, scale, seed=0, dim="member"):
    """Members drawn around the truth's own distribution (calibrated when scale == 1)."""
    rng = np.random.default_rng(seed)
    centre = truth + rng.normal(size=truth.shape)  # what the ensemble "knows": truth + N(0, 1)
    draws = [centre + scale * rng.normal(size=truth.shape) for _ in range(members)]
    return xr.concat(draws, dim)


@pytest.fixture(scope="module")
def truth():
    return synthetic_field("t2m", times=4, ny=24, nx=24, seed=3).astype("float64")


def test_evaluate_crps_matches_properscoring(truth):
    properscoring = pytest.importorskip("properscoring")
    ens = _ensemble(truth, 6, 1.0)
    ev = xds.evaluate(ens, truth, weighted=False)
    ref = properscoring.crps_ensemble(truth.values, ens.transpose(..., "member").values)
    np.testing.assert_allclose(float(ev.crps), ref.mean(), rtol=1e-10)
    np.testing.assert_allclose(crps_ensemble(ens, truth).values, ref, rtol=1e-10)


def test_crps_of_a_one_member_ensemble_is_the_mae(truth):
    det = truth + 0.5
    ev = xds.evaluate(det.expand_dims(member=1), truth, weighted=False)
    np.testing.assert_allclose(float(ev.crps), 0.5, rtol=1e-10)


def test_evaluate_gives_every_ensemble_score(truth):
    ens = _ensemble(truth, 8, 1.0).rename(member="realization")
    ev = xds.evaluate(ens, truth, member_dim="realization")
    for name in ("crps", "spread", "spread_skill_ratio", "rank_histogram", "rank_flatness", "spectrum",
                 "spectrum_truth", "lsd"):
        assert name in ev, name
        assert ev[name].attrs["long_name"]
    assert ev.rank_histogram.sizes["rank"] == 9 and int(ev.rank_histogram.sum()) == truth.size
    assert 0.8 < float(ev.spread_skill_ratio) < 1.25  # calibrated: spread matches the error
    assert float(ev.rank_flatness) < 0.1
    assert ev.lsd.attrs["units"] == "dB" and float(ev.lsd) >= 0


def test_calibrated_ensemble_has_a_flat_histogram_and_underdispersed_one_does_not(truth):
    flat = rank_histogram(_ensemble(truth, 9, 1.0), truth)
    narrow = rank_histogram(_ensemble(truth, 9, 0.2), truth)
    assert rank_flatness(flat) < 0.1 < rank_flatness(narrow)
    assert narrow[0] + narrow[-1] > 0.5 * narrow.sum()  # U shape: the truth falls outside
    assert rank_flatness(narrow, "entropy") < rank_flatness(flat, "entropy") <= 1.0


def test_rank_flatness_reference_values():
    assert rank_flatness([5, 5, 5, 5]) == 0.0
    assert rank_flatness([12, 0, 0, 0]) == pytest.approx(2 * 3 / 4)
    assert rank_flatness([5, 5, 5, 5], "entropy") == pytest.approx(1.0)
    draws = np.random.default_rng(0).multinomial(4000, [0.2] * 5, size=400)
    mean_delta = np.mean([rank_flatness(c, "delta") for c in draws])
    assert mean_delta == pytest.approx(1.0, abs=0.15)  # expectation 1 for independent draws
    with pytest.raises(DataError, match="kind must be"):
        rank_flatness([1, 2], "chi2")
    with pytest.raises(DataError, match="empty"):
        rank_flatness([0, 0, 0])


def test_log_spectral_distance(truth):
    assert log_spectral_distance(truth, truth) == pytest.approx(0.0, abs=1e-9)
    anomaly = truth - truth.mean()
    assert log_spectral_distance(2 * anomaly, anomaly) == pytest.approx(10 * np.log10(4), rel=1e-9)
    smooth = truth.rolling(lat=3, lon=3, center=True, min_periods=1).mean()
    # with a taper (the domain is not periodic) smoothing shows as a deficit of small-scale power
    assert log_spectral_distance(smooth, truth, window="hann") > 5.0
    assert log_spectral_distance(smooth, truth, window="hann", min_wavenumber=0.25) > \
        log_spectral_distance(smooth, truth, window="hann")
    with pytest.raises(DataError, match="grid size"):
        log_spectral_distance(truth.isel(lat=slice(0, 12), lon=slice(0, 12)), truth)


def test_seeded_noise_is_independent_of_chunks_and_members():
    a = seeded_noise((3, 2, 40, 70), channels=2, seed=4).compute()
    b = seeded_noise((3, 2, 40, 70), channels=2, seed=4, chunks=(1, 1, 13, 33)).compute()
    np.testing.assert_array_equal(a, b)
    five = seeded_noise((5, 2, 40, 70), channels=2, seed=4).compute()
    np.testing.assert_array_equal(five[:, :3], a)  # member k does not depend on the ensemble size
    assert abs(a.mean()) < 0.05 and abs(a.std() - 1) < 0.05
    assert not np.allclose(seeded_noise((1, 1, 8, 8), channels=1, seed=5).compute(), a[:, :1, :1, :8, :8])
    with pytest.raises(DataError, match="non-negative"):
        seeded_noise((1, 4, 4), channels=1, seed=-1)


def test_ensemble_mean_needs_the_member_dim(truth):
    with pytest.raises(DataError, match="no ensemble dimension"):
        xds.ensemble_mean(truth)


def test_ensemble_plots(truth, tmp_path):
    pytest.importorskip("matplotlib")
    from xdownscale.plot_ensemble import plot_members, plot_rank_histogram, plot_spectra

    ens = _ensemble(truth, 4, 1.0)
    ens.attrs["units"] = "K"
    figs = [plot_rank_histogram(ens, truth, path=tmp_path / "rank.png", label="test"),
            plot_spectra({"ensemble": ens, "smooth": truth.rolling(lat=3, center=True).mean().fillna(truth)},
                         truth, path=tmp_path / "spec.png"),
            plot_members(ens, truth, n=2, time=1, path=tmp_path / "members.png")]
    for name in ("rank.png", "spec.png", "members.png"):
        assert (tmp_path / name).stat().st_size > 1000
    assert "reliability index" in figs[0].axes[0].get_title()
    assert len(figs[2].axes) >= 4  # truth, mean, 2 members (+ colour bar)
    with pytest.raises(DataError, match="ensemble dimension"):
        plot_members(truth)
