"""Export to ONNX / TorchScript / torch.export: same output as PyTorch, constraint layer included."""
import numpy as np
import pytest
import torch

import xdownscale as xds
from xdownscale.downscaler import Downscaler
from xdownscale.export import example_inputs, read_metadata
from xdownscale.models import list_models, model_info
from xdownscale.models._registry import DEFAULT_WRAPPER
from xdownscale.nn.constraints import block_mean
from xdownscale.testing import synthetic_field

ort = pytest.importorskip("onnxruntime")
pytest.importorskip("onnxscript")


def _random_model(name: str, constraint: str, factor: int = 4, mean: float = 0.0, std: float = 1.0,
                  kwargs=None) -> Downscaler:
    """A registered model with random (non-zero) weights, as a trained one would have."""
    network = {"model": name, "factor": factor, "in_channels": 2, "constraint": constraint, "skip": "bicubic",
               "mean": mean, "std": std, "residual_scale": 0.5 * std, "constraint_kwargs": kwargs}
    meta = {"network": network, "variable": "v", "attrs": {"units": "K"}, "predictors": [], "covariates": [],
            "normalization": {"target": {"mean": mean, "std": std}, "predictors": [], "covariates": {}}}
    d = Downscaler.from_meta(meta)
    torch.manual_seed(0)
    for p in d.module.parameters():
        p.data.normal_(0, 0.05)
    return d


def _onnx_run(path, x, w, c):
    session = ort.InferenceSession(str(path), providers=["CPUExecutionProvider"])
    feeds = {"x": x, "weights": w, "coarse": c}
    return session.run(None, {i.name: feeds[i.name].numpy() for i in session.get_inputs()})[0]


@pytest.mark.parametrize("name,constraint", [("maunet-light", "add"), ("cnn", "softmax"), ("maunet", "softmax"),
                                             ("maunet-light", "scadd")])
def test_onnx_reproduces_pytorch_and_conserves(name, constraint, tmp_path):
    d = _random_model(name, constraint, mean=5.0 if constraint in ("softmax", "scadd") else 0.0)
    if constraint == "scadd":
        d = _random_model(name, constraint, mean=5.0, kwargs={"lower": 0.0, "upper": 100.0})
    path = xds.export(d, tmp_path / "m.onnx", tile=(12, 10))
    x, w, c = example_inputs(d, 12, 10, batch=3, seed=1)
    if constraint in ("softmax", "scadd"):
        c = c.abs()
    with torch.no_grad():
        ref = d.module(x, w, c)
    out = _onnx_run(path, x, w, c)
    assert out.shape == (3, 1, 48, 40)
    np.testing.assert_allclose(out, ref.numpy(), rtol=0, atol=1e-5 * max(1.0, float(ref.abs().max())))
    # the constraint layer is in the graph: the exported output conserves every coarse cell
    back = block_mean(torch.from_numpy(out), 4, w)
    np.testing.assert_allclose(back.numpy(), c.numpy(), rtol=0, atol=1e-5 * float(c.abs().max()))
    meta = read_metadata(path)
    assert meta["network"]["model"] == name and meta["receptive_radius"] == d.module.receptive_radius


def _deterministic_default_models():
    return [n for n in list_models(trainable=True)
            if not model_info(n)["probabilistic"] and model_info(n)["wrapper"] == DEFAULT_WRAPPER]


@pytest.mark.parametrize("name", _deterministic_default_models())
def test_every_deterministic_model_exports_to_torchscript(name, tmp_path):
    d = _random_model(name, "add")
    x, w, c = example_inputs(d, 8, 8, batch=2)
    path = xds.export(d, tmp_path / f"{name}.ts", tile=(8, 8))
    loaded = torch.jit.load(str(path))
    with torch.no_grad():
        np.testing.assert_allclose(loaded(x, w, c).numpy(), d.module(x, w, c).numpy(), atol=1e-5)
    assert read_metadata(path)["network"]["model"] == name


def test_torch_export_round_trip_and_dynamic_batch(tmp_path):
    d = _random_model("maunet-light", "add", factor=2)
    path = xds.export(d, tmp_path / "m.pt2", tile=(6, 6))
    program = torch.export.load(str(path)).module()
    for batch in (1, 5):
        x, w, c = example_inputs(d, 6, 6, batch=batch, seed=batch)
        with torch.no_grad():
            np.testing.assert_allclose(program(x, w, c).numpy(), d.module(x, w, c).numpy(), atol=1e-5)


def test_export_a_trained_checkpoint_by_path(tmp_path, monkeypatch):
    monkeypatch.setenv("XDOWNSCALE_HOME", str(tmp_path / "store"))
    hr = synthetic_field("t2m", times=4, ny=16, nx=16)
    m = xds.fit(hr, model="maunet-light", factor=2, constraint="add", epochs=1, batch_size=4, patch_size=16,
                checkpoint=tmp_path / "m.pt", progress=False)
    path = xds.export(tmp_path / "m.pt", tmp_path / "m.ts", tile=(8, 8))
    assert read_metadata(path)["checkpoint_sha256"] == m.checkpoint_hash


def test_bad_export_requests_are_explained(tmp_path):
    d = _random_model("cnn", "none")
    with pytest.raises(xds.DataError, match=".onnx"):
        xds.export(d, tmp_path / "m.tflite")
