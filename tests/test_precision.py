"""Mixed precision (engine/precision.py) and the small-input path of predict (no Dask graph)."""
import dask.array as dsa
import numpy as np
import pytest
import torch
import xarray as xr

import xdownscale as xds
from xdownscale.engine import precision as prec
from xdownscale.engine.infer import ModelRunner, runner_for
from xdownscale.prediction import baseline
from xdownscale.testing import synthetic_field


def random_cnn(skip="bicubic"):
    """An untrained but non-trivial softmax cnn: random weights everywhere (the tail too)."""
    from xdownscale.downscaler import Downscaler

    torch.manual_seed(0)
    net = xds.models.DownscalingNet("cnn", 4, constraint="softmax", skip=skip, mean=20.0, std=5.0, width=16,
                                    n_blocks=2)
    for p in net.parameters():
        torch.nn.init.normal_(p, std=0.05)
    meta = baseline("bicubic", 4).meta
    meta = dict(meta, network=dict(meta["network"], model="cnn", constraint="softmax", skip=skip, mean=20.0,
                                   std=5.0, width=16, n_blocks=2),
                normalization={"target": {"mean": 20.0, "std": 5.0}, "predictors": [], "covariates": {}})
    return Downscaler(net, meta)


@pytest.fixture(scope="module")
def model():
    return random_cnn()


@pytest.fixture(scope="module")
def lr():
    return synthetic_field("tcwv", times=6, ny=48, nx=64, seed=3).downscale.coarsen(4).compute()


def test_auto_follows_what_the_cpu_reports(monkeypatch):
    cpu = torch.device("cpu")
    monkeypatch.setattr(prec, "cpu_flags", lambda: frozenset({"avx512f", "avx512_bf16"}))
    assert prec.resolve_precision("auto", cpu) == "bf16"
    monkeypatch.setattr(prec, "cpu_flags", lambda: frozenset({"avx512f", "amx_bf16"}))
    assert prec.resolve_precision("auto", cpu) == "bf16"
    monkeypatch.setattr(prec, "cpu_flags", lambda: frozenset({"avx2"}))
    monkeypatch.setattr(torch.cpu, "_is_avx512_bf16_supported", lambda: False)
    assert prec.resolve_precision("auto", cpu) == "fp32"
    assert prec.resolve_precision("bf16", cpu) == "bf16"  # asked for explicitly: honoured
    assert prec.resolve_precision("auto", torch.device("meta")) == "fp32"
    with pytest.raises(xds.DataError, match="precision='half' is not known: use one of auto, fp32, bf16, fp16"):
        prec.resolve_precision("half", cpu)


def test_fp16_on_a_cpu_without_it_warns(monkeypatch):
    monkeypatch.setattr(prec, "cpu_flags", lambda: frozenset({"avx512_bf16"}))
    with pytest.warns(UserWarning, match="emulated"):
        assert prec.resolve_precision("fp16", torch.device("cpu")) == "fp16"


def block_means(y: np.ndarray, f: int, w: np.ndarray) -> np.ndarray:
    n, hh, ww = y.shape
    wy = w.astype("float64").reshape(-1, f)[None, :, :, None, None]  # (1, rows, f, 1, 1)
    blocks = y.reshape(n, hh // f, f, ww // f, f)
    return (blocks * wy).sum(axis=(2, 4)) / (wy.sum(axis=2)[:, :, :, 0] * f)


@pytest.mark.parametrize("precision,skip", [("bf16", "bicubic"), ("bf16", None), ("fp16", None)])
def test_lower_precision_changes_the_body_only_and_conserves_as_fp32(lr, precision, skip):
    """The body runs lowered (outputs differ from fp32), the constraint in float32 (block means
    reproduce the coarse field to float32 round-off, as in fp32). Without a skip nothing float32
    is added to the body's output before the constraint: it must be cast back itself."""
    model = random_cnn(skip)
    x = ((lr.values - 20.0) / 5.0).astype("float32")[:, None]
    coarse = lr.values.astype("float32")
    w = np.cos(np.deg2rad(np.linspace(30, 60, lr.shape[-2] * 4))).astype("float32")
    with pytest.warns(UserWarning) if precision == "fp16" else _nothing():
        low = ModelRunner(model, "cpu", precision)(x, coarse, w, 4)
    full = ModelRunner(model, "cpu", "fp32")(x, coarse, w, 4)
    assert low.dtype == np.float32
    diff = np.abs(low - full).max() / np.abs(full - full.mean()).max()
    assert 1e-6 < diff < 3e-2, diff  # lowered, but only a little
    for y in (full, low):
        err = np.abs(block_means(y.astype("float64"), 4, w) - coarse).max() / np.abs(coarse).max()
        assert err < 2e-6, err  # a constraint run in bf16 leaves ~1e-3


class _nothing:
    def __enter__(self):
        return self

    def __exit__(self, *exc):
        return False


def test_predict_records_the_precision_in_history(model, lr):
    sr = lr.downscale.predict(model=model, precision="bf16")
    assert sr.attrs["history"].splitlines()[-1].endswith("precision=bf16")
    assert sr.attrs["xdownscale_precision"] == "bf16"
    assert lr.downscale.predict(model=model).attrs["xdownscale_precision"] == "fp32"  # the default


def test_families_without_mixed_precision_refuse_it():
    class Temporal:
        name = "temporal"

    prec.check_precision(Temporal(), "fp32", "convgru")
    prec.check_precision(Temporal(), "auto", "convgru")  # means fp32 there
    with pytest.raises(xds.DataError, match="runs in float32 only; use precision='fp32'"):
        prec.check_precision(Temporal(), "bf16", "convgru")


def test_small_in_memory_input_is_predicted_without_a_graph(model, lr):
    """One chunk in memory: numpy back, equal to the tiled Dask prediction of the same field."""
    fast = lr.downscale.predict(model=model)
    assert isinstance(fast.data, np.ndarray)
    tiled = lr.chunk({"time": 2, "lat": 6, "lon": 8}).downscale.predict(model=model)
    assert isinstance(tiled.data, dsa.Array)
    np.testing.assert_allclose(fast.values, tiled.values, rtol=1e-5, atol=1e-5)
    assert fast.dims == tiled.dims and fast.attrs["units"] == tiled.attrs["units"]
    xr.testing.assert_identical(fast.coords.to_dataset(), tiled.coords.to_dataset())
    # a field over the memory plan's chunk stays lazy (here: a tile side cap below the field)
    big = lr.downscale.predict(model=model, chunks={"lat": 6, "lon": 8})
    assert isinstance(big.data, dsa.Array)


def test_small_global_field_wraps_its_halo_in_longitude(global_lr):
    """The in-memory path wraps a periodic longitude as the tiled path's halos do."""
    lr = global_lr
    fast = xds.predict(lr, model="bicubic", factor=4, constraint="add")
    assert isinstance(fast.data, np.ndarray)
    tiled = xds.predict(lr.chunk({"lon": 8}), model="bicubic", factor=4, constraint="add")
    np.testing.assert_allclose(fast.values, tiled.values, atol=1e-4)
    shifted = xds.predict(lr.roll(lon=8, roll_coords=False), model="bicubic", factor=4, constraint="add").values
    np.testing.assert_allclose(shifted, np.roll(fast.values, 32, axis=-1), atol=1e-3)  # no seam at the date line


def test_the_runner_is_reused_until_the_weights_change(model, lr):
    first = runner_for(model, "cpu", "fp32")
    assert runner_for(model, "cpu", "fp32") is first  # no second channels-last copy
    assert runner_for(model, "cpu", "bf16") is not first
    before = lr.downscale.predict(model=model).values
    with torch.no_grad():
        for p in model.module.parameters():
            p.mul_(1.5)  # in place, as an optimizer step does
    try:
        assert runner_for(model, "cpu", "fp32") is not first
        assert np.abs(lr.downscale.predict(model=model).values - before).max() > 1e-3  # not the stale network
    finally:
        with torch.no_grad():
            for p in model.module.parameters():
                p.div_(1.5)


def test_cli_fits_and_predicts_in_bf16_and_records_it(tmp_path, monkeypatch, capsys):
    """bf16 training keeps float32 master weights, records the precision in the checkpoint, and the
    product's history names the precision it was predicted in."""
    from xdownscale.cli import main
    from xdownscale.engine.checkpoint import read_checkpoint

    monkeypatch.setenv("XDOWNSCALE_HOME", str(tmp_path / "store"))
    hr = synthetic_field("tcwv", times=6, ny=32, nx=48, seed=3)
    hr.to_dataset().to_netcdf(tmp_path / "hr.nc")
    xds.coarsen(hr, 4).to_dataset().to_netcdf(tmp_path / "lr.nc")
    ckpt = tmp_path / "m.pt"
    rc = main(["fit", str(tmp_path / "hr.nc"), "--var", "tcwv", "--model", "cnn", "--factor", "4", "--constraint",
               "softmax", "--max-updates", "3", "--width", "8", "--n-blocks", "1", "--patch-size", "16",
               "--batch-size", "8", "--precision", "bf16", "--out", str(ckpt), "-q"])
    assert rc == 0, capsys.readouterr().err
    payload = read_checkpoint(ckpt)
    assert payload["training"]["precision"] == "bf16" and payload["training"]["config"]["precision"] == "bf16"
    assert {v.dtype for v in payload["state_dict"].values() if v.is_floating_point()} == {torch.float32}
    assert xds.load(ckpt).module.body.head[0].weight.abs().sum() > 0
    out = tmp_path / "sr.nc"
    rc = main(["predict", str(tmp_path / "lr.nc"), "--model", str(ckpt), "--precision", "bf16", "--out", str(out),
               "-q"])
    assert rc == 0, capsys.readouterr().err
    with xr.open_dataset(out) as ds:
        assert "precision=bf16" in ds["tcwv"].attrs["history"]
        assert float(ds["tcwv"].min()) >= 0


@pytest.mark.filterwarnings("ignore:precision='fp16' on a CPU")
@pytest.mark.parametrize("precision", ["bf16", "fp16"])
def test_a_lower_precision_training_step_updates_float32_weights(model, precision):
    """Autocast lowers the forward only: gradients reach the float32 parameters, which stay float32
    (fp16 through the gradient scaler)."""
    from xdownscale.config import TrainConfig
    from xdownscale.engine.trainer import train

    class Patches(torch.utils.data.Dataset):
        n_samples = 8

        def __len__(self):
            return self.n_samples

        def set_epoch(self, epoch):
            pass

        def __getitem__(self, i):
            g = torch.Generator().manual_seed(i)
            x = torch.randn(1, 4, 4, generator=g)
            c = x * 5.0 + 20.0
            y = torch.nn.functional.interpolate(c[None], scale_factor=4, mode="nearest")[0]
            return x, y + torch.randn(1, 16, 16, generator=g), torch.ones(1, 16, 1), c

    import copy

    net = copy.deepcopy(model.module)
    before = [p.detach().clone() for p in net.parameters()]
    cfg = TrainConfig(max_updates=2, batch_size=4, evals=1, progress=False, precision=precision, warmup=0.0)
    result = train(net, Patches(), Patches(), cfg, torch.device("cpu"))
    assert result["precision"] == precision and result["updates"] == 2
    assert all(p.dtype == torch.float32 for p in net.parameters())
    assert any((p - b).abs().max() > 0 for p, b in zip(net.parameters(), before))


def test_a_checkpoint_path_is_loaded_once_until_the_file_changes(model, lr, tmp_path):
    from xdownscale.engine.resolve import resolve_model

    path = tmp_path / "m.pt"
    model.save(path)
    first = resolve_model(str(path))
    assert resolve_model(str(path)) is first  # no second read, hash and build
    before = lr.downscale.predict(model=str(path)).values
    with torch.no_grad():
        model.module.body.tail.weight.mul_(3.0)
    try:
        model.save(path)  # an atomic rewrite: another file at the same path
        again = resolve_model(str(path))
        assert again is not first and again.checkpoint_hash != first.checkpoint_hash
        assert np.abs(lr.downscale.predict(model=str(path)).values - before).max() > 1e-4
    finally:
        with torch.no_grad():
            model.module.body.tail.weight.div_(3.0)
