"""Conservation constraint layers and the DownscalingNet wrapper around every registered model."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from xdownscale.models import DownscalingNet, list_models, model_info
from xdownscale.models._registry import DEFAULT_WRAPPER
from xdownscale.nn.constraints import (
    CONSTRAINTS,
    HARD_CONSTRAINTS,
    block_mean,
    make_constraint,
    mass_violation,
    upsample_nearest,
)

RTOL = 1e-5


def coslat_weights(batch: int, rows: int, lat0: float, step: float, descending: bool) -> torch.Tensor:
    """(B, 1, H, 1) cos-latitude row weights of a regular grid."""
    lat = lat0 + step * (np.arange(rows) + 0.5)
    if descending:
        lat = lat[::-1]
    w = np.cos(np.deg2rad(lat)).astype("float32")
    return torch.from_numpy(w.copy()).view(1, 1, rows, 1).expand(batch, 1, rows, 1)


@st.composite
def cases(draw, weighted=st.sampled_from(["none", "ascending", "descending"])):
    """A random problem: factor, sizes, seed and optional cos-lat weights."""
    factor = draw(st.sampled_from([2, 3, 4]))
    b, h, w = draw(st.integers(1, 2)), draw(st.integers(1, 5)), draw(st.integers(1, 5))
    seed = draw(st.integers(0, 2**31 - 1))
    mode = draw(weighted)
    weights = None
    if mode != "none":
        rows = h * factor
        step = draw(st.floats(0.05, 160.0 / rows))
        lat0 = draw(st.floats(-80.0, 80.0 - rows * step))
        weights = coslat_weights(b, rows, lat0, step, mode == "descending")
    return factor, b, h, w, seed, weights


def positive_fields(seed, b, h, w, factor, lo=0.1, hi=10.0):
    g = torch.Generator().manual_seed(seed)
    y = lo + (hi - lo) * torch.rand(b, 1, h * factor, w * factor, generator=g)
    x = lo + (hi - lo) * torch.rand(b, 1, h, w, generator=g)
    return y, x


def assert_conserves(out, x, factor, weights, rtol=RTOL):
    """Block means equal x to ``rtol`` relative to the field's magnitude: float32 cancellation
    (a pre-output much larger than a small coarse value) is judged against the field's scale."""
    pm = block_mean(out, factor, weights)
    assert pm.shape == x.shape
    torch.testing.assert_close(pm, x, rtol=rtol, atol=rtol * float(x.abs().max()))


# ------------------------------------------------------------------ P and K


def test_block_mean_and_upsample():
    x = torch.arange(4.0).view(1, 1, 2, 2)
    k = upsample_nearest(x, 3)
    assert k.shape == (1, 1, 6, 6)
    torch.testing.assert_close(block_mean(k, 3), x)
    w = coslat_weights(1, 6, 10.0, 10.0, descending=False)
    torch.testing.assert_close(block_mean(k, 3, w), x)
    y = torch.arange(16.0).view(1, 1, 4, 4)
    wr = torch.tensor([1.0, 3.0, 1.0, 1.0]).view(1, 1, 4, 1)
    expected = torch.tensor([[(0 + 1 + 3 * 4 + 3 * 5) / 8, (2 + 3 + 3 * 6 + 3 * 7) / 8],
                             [(8 + 9 + 12 + 13) / 4, (10 + 11 + 14 + 15) / 4]]).view(1, 1, 2, 2)
    torch.testing.assert_close(block_mean(y, 2, wr), expected)


# ------------------------------------------------------------------ hard constraints: property tests


@pytest.mark.parametrize("name", HARD_CONSTRAINTS)
@settings(max_examples=30, deadline=None)
@given(case=cases())
def test_projecting_a_physical_field_conserves_and_keeps_its_shape_within_blocks(name, case):
    # project() takes a finished physical field (liif, diffusion samples): every hard constraint
    # conserves it, and the multiplicative ones only rescale each block (softmax of log y = mult)
    factor, b, h, w, seed, weights = case
    y, x = positive_fields(seed, b, h, w, factor, lo=270.0, hi=290.0)
    kwargs = {"lower": 0.0, "upper": 400.0} if name == "scadd" else {}
    out = make_constraint(name, factor, **kwargs).project(y, x, weights)
    assert_conserves(out, x, factor, weights)
    if name in ("mult", "softmax"):
        ratio = upsample_nearest(x / block_mean(y, factor, weights), factor)
        torch.testing.assert_close(out, y * ratio, rtol=1e-5, atol=1e-3)


@pytest.mark.parametrize("name", HARD_CONSTRAINTS)
@settings(max_examples=40, deadline=None)
@given(case=cases())
def test_hard_constraints_conserve(name, case):
    factor, b, h, w, seed, weights = case
    y, x = positive_fields(seed, b, h, w, factor)
    kwargs = {"lower": 0.0, "upper": 12.0} if name == "scadd" else {}
    layer = make_constraint(name, factor, **kwargs)
    assert layer.hard
    out = layer(y, x, weights)
    assert out.shape == y.shape and out.dtype == torch.float32
    assert torch.isfinite(out).all()
    assert_conserves(out, x, factor, weights)
    assert float(mass_violation(out, x, factor, weights)) <= RTOL * float(x.abs().max())


@settings(max_examples=40, deadline=None)
@given(case=cases(), magnitude=st.sampled_from([1.0, 30.0, 100.0, 1e4]))
def test_softmax_non_negative_with_extreme_logits(case, magnitude):
    factor, b, h, w, seed, weights = case
    g = torch.Generator().manual_seed(seed)
    # logits far outside exp's float32 range, of both signs, mixed inside blocks
    y = magnitude * (2 * torch.rand(b, 1, h * factor, w * factor, generator=g) - 1)
    y[..., ::2, :] += magnitude
    x = 5 * torch.rand(b, 1, h, w, generator=g)
    x[..., 0, 0] = 0.0  # a dry coarse cell
    out = make_constraint("softmax", factor)(y, x, weights)
    assert torch.isfinite(out).all()
    assert (out >= 0).all()
    assert torch.all(out[..., :factor, :factor] == 0)
    assert_conserves(out, x, factor, weights)


@settings(max_examples=40, deadline=None)
@given(
    case=cases(),
    lower=st.floats(-50.0, 50.0),
    width=st.floats(0.5, 100.0),
)
def test_scadd_stays_within_bounds(case, lower, width):
    factor, b, h, w, seed, weights = case
    upper = lower + width
    g = torch.Generator().manual_seed(seed)
    y = lower + width * torch.rand(b, 1, h * factor, w * factor, generator=g)
    x = lower + width * torch.rand(b, 1, h, w, generator=g)
    x[..., 0, 0] = upper  # a coarse value on the bound
    out = make_constraint("scadd", factor, lower=lower, upper=upper)(y, x, weights)
    assert torch.isfinite(out).all()
    tol = 1e-5 * max(width, abs(lower), abs(upper))
    assert float(out.min()) >= lower - tol and float(out.max()) <= upper + tol
    pm = block_mean(out, factor, weights)
    torch.testing.assert_close(pm, x, rtol=RTOL, atol=tol)


@pytest.mark.parametrize("name", ["none", "soft"])
@settings(max_examples=10, deadline=None)
@given(case=cases())
def test_none_and_soft_leave_output_unchanged(name, case):
    factor, b, h, w, seed, weights = case
    y, x = positive_fields(seed, b, h, w, factor)
    layer = make_constraint(name, factor)
    assert not layer.hard
    assert torch.equal(layer(y, x, weights), y)


def test_unknown_constraint_suggests_close_name():
    with pytest.raises(ValueError, match=r"unknown constraint 'sofmax'.*Did you mean 'softmax'"):
        make_constraint("sofmax", 2)
    with pytest.raises(ValueError, match="Choose one of"):
        make_constraint("zzz", 2)
    assert make_constraint(None, 2).name == "none"


def test_scadd_rejects_empty_interval():
    with pytest.raises(ValueError, match="upper > lower"):
        make_constraint("scadd", 2, lower=1.0, upper=1.0)


@pytest.mark.parametrize("name", CONSTRAINTS)
@pytest.mark.parametrize("weighted", [False, True])
def test_constraint_gradients_flow(name, weighted):
    factor, b, h, w = 2, 2, 3, 4
    y, x = positive_fields(0, b, h, w, factor)
    y.requires_grad_(True)
    weights = coslat_weights(b, h * factor, 30.0, 5.0, descending=True) if weighted else None
    kwargs = {"lower": 0.0, "upper": 12.0} if name == "scadd" else {}
    out = make_constraint(name, factor, **kwargs)(y, x, weights)
    target = torch.rand(out.shape, generator=torch.Generator().manual_seed(1))
    ((out - target) ** 2).mean().backward()
    assert y.grad is not None and torch.isfinite(y.grad).all()
    assert float(y.grad.abs().sum()) > 0


# ------------------------------------------------------------------ DownscalingNet x every model x constraint

BODY = {"width": 8, "n_blocks": 1}
MEAN, STD = 280.0, 10.0
SCADD = {"lower": 200.0, "upper": 360.0}


def net_cases():
    for model in list_models():
        if model_info(model)["wrapper"] != DEFAULT_WRAPPER:
            continue  # families with their own wrapper (temporal, GAN, diffusion) have equivalent tests in their files
        for constraint in CONSTRAINTS:
            for factor in (2, 3, 4):
                if model == "cnn" and factor == 3:
                    continue  # tested below: a clear error
                yield pytest.param(model, constraint, factor, id=f"{model}-{constraint}-x{factor}")


def test_registry_has_models():
    names = list_models()
    assert {"cnn", "espcn", "nearest", "bilinear", "bicubic", "conservative"} <= set(names)
    assert set(list_models(trainable=True)) == {n for n in names if model_info(n)["trainable"]}


def test_cnn_factor_3_is_a_clear_error():
    with pytest.raises(ValueError, match=r"power of\s+two.*espcn"):
        DownscalingNet("cnn", 3, **BODY)


@pytest.mark.parametrize("model,constraint,factor", list(net_cases()))
def test_downscaling_net(model, constraint, factor):
    torch.manual_seed(0)
    b, c, h, w = 2, 2, 5, 6
    kwargs = {"constraint_kwargs": SCADD} if constraint == "scadd" else {}
    net = DownscalingNet(model, factor, in_channels=c, constraint=constraint, mean=MEAN, std=STD, **BODY, **kwargs)
    x = torch.randn(b, c, h, w)
    weights = coslat_weights(b, h * factor, 35.0, 1.0, descending=True)
    out = net(x, weights)
    assert out.shape == (b, 1, h * factor, w * factor)
    assert torch.isfinite(out).all()
    x_phys = x[:, :1] * STD + MEAN
    if constraint in HARD_CONSTRAINTS or model == "conservative":
        assert_conserves(out, x_phys, factor, weights)
        assert_conserves(net(x), x_phys, factor, None)  # uniform cells too
    if constraint == "softmax":
        assert (out >= 0).all()
    if constraint == "scadd":
        assert out.min() >= SCADD["lower"] - 1e-3 and out.max() <= SCADD["upper"] + 1e-3
    if model_info(model)["trainable"]:
        params = [p for p in net.parameters() if p.requires_grad]
        assert params
        ((out - MEAN) ** 2).mean().backward()
        grads = [p.grad for p in params if p.grad is not None]
        assert grads and all(torch.isfinite(g).all() for g in grads)
        assert sum(float(g.abs().sum()) for g in grads) > 0
    else:
        assert not any(p.requires_grad for p in net.parameters())
