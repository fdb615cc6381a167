"""Teacher-student distillation (xds.distill) through the shared trainer."""
import numpy as np
import pytest
import torch

import xdownscale as xds
from xdownscale.engine import trainer
from xdownscale.testing import assert_conserves, synthetic_field

OPTS = dict(epochs=2, batch_size=8, patch_size=16, samples_per_epoch=32, progress=False, seed=0)


@pytest.fixture(autouse=True)
def _model_store(tmp_path, monkeypatch):
    monkeypatch.setenv("XDOWNSCALE_HOME", str(tmp_path / "store"))


@pytest.fixture(scope="module")
def data():
    hr = synthetic_field("t2m", times=10, ny=16, nx=16, seed=7)
    lr = xds.coarsen(hr, 2)
    return hr, (lr + 1.0 + 0.2 * (lr - 285.0)).rename(hr.name).assign_attrs(lr.attrs)


@pytest.fixture(scope="module")
def teacher(data, tmp_path_factory):
    hr, lr = data
    path = tmp_path_factory.mktemp("t") / "teacher.pt"
    return xds.fit(hr, lr=lr, model="maunet", width=8, depth=2, constraint="none", checkpoint=path, **OPTS)


def test_alpha_zero_is_plain_training(data, teacher, tmp_path):
    hr, lr = data
    plain = xds.fit(hr, lr=lr, model="maunet-light", checkpoint=tmp_path / "a.pt", **OPTS)
    student = xds.distill(teacher, "maunet-light", hr, lr=lr, alpha=0.0, checkpoint=tmp_path / "b.pt", **OPTS)
    x = torch.randn(2, 1, 8, 8)
    torch.testing.assert_close(student.module(x), plain.module(x))


def test_the_teacher_term_pulls_the_student_to_the_teacher(data, teacher, tmp_path):
    hr, lr = data
    runs = {a: xds.distill(teacher, "maunet-light", hr, lr=lr, alpha=a, checkpoint=tmp_path / f"{a}.pt",
                           learning_rate=3e-3, **OPTS) for a in (0.0, 1.0)}
    t_out = xds.predict(lr, model=teacher, like=hr)
    gap = {a: float(xds.evaluate(xds.predict(lr, model=m, like=hr), t_out)["rmse"]) for a, m in runs.items()}
    assert gap[1.0] < gap[0.0]
    assert runs[1.0].meta["distillation"]["alpha"] == 1.0
    assert runs[1.0].meta["distillation"]["teacher"] == "maunet"


def test_student_inherits_normalisation_keeps_constraint_and_round_trips(data, teacher, tmp_path):
    hr, _ = data
    t2 = xds.fit(hr, model="maunet", factor=2, width=4, depth=1, constraint="add", checkpoint=tmp_path / "t.pt",
                 **{**OPTS, "epochs": 1})
    student = xds.distill(t2, "maunet-light", hr.isel(time=slice(0, 6)), checkpoint=tmp_path / "s.pt",
                          **{**OPTS, "epochs": 1})
    assert student.constraint == "add" and student.factor == 2
    assert student.meta["normalization"]["target"]["mean"] == t2.meta["normalization"]["target"]["mean"]
    lr = xds.coarsen(hr, 2)
    pred = xds.predict(lr, model=student).compute()
    assert_conserves(pred, lr, 2, rtol=1e-5)
    again = xds.load(tmp_path / "s.pt")
    np.testing.assert_array_equal(xds.predict(lr, model=again).values, pred.values)
    assert xds.list_models().count("maunet-light") == 1


def test_loss_fn_hook_replaces_the_training_loss(data, tmp_path, monkeypatch):
    hr, lr = data
    calls = []

    def loss_fn(pred, x, y, w, c):
        calls.append(pred.shape)
        return ((pred - torch.nan_to_num(y)) ** 2).mean()

    real_train = trainer.train
    monkeypatch.setattr("xdownscale.engine.trainer.train", lambda *a, **k: real_train(*a, **k, loss_fn=loss_fn))
    xds.fit(hr, lr=lr, model="maunet-light", checkpoint=tmp_path / "l.pt", **{**OPTS, "epochs": 1})
    assert len(calls) == 4 and calls[0][1:] == (1, 16, 16)


def test_bad_distillation_requests_are_explained(data, teacher):
    hr, lr = data
    with pytest.raises(xds.DataError, match="alpha"):
        xds.distill(teacher, "maunet-light", hr, lr=lr, alpha=1.5)
    with pytest.raises(xds.DataError, match="teacher_on"):
        xds.distill(teacher, "maunet-light", hr, lr=lr, teacher_on="sea")
    with pytest.raises(xds.DataError, match="width"):
        xds.distill(teacher, "maunet-light", hr, lr=lr, widht=4)
    with pytest.raises(xds.DataError, match="baseline"):
        xds.distill(teacher, "bicubic", hr, lr=lr)
    with pytest.raises(xds.DataError, match="covariates"):
        xds.distill(teacher, "maunet-light", hr, lr=lr, covariates=hr.isel(time=0, drop=True).rename("orog"))


def test_split_labelled_validates_on_fields_with_a_truth_only():
    from xdownscale.families.distillation.teachers import split_labelled

    has_truth = np.array([True, False, True, False, False, True, True, True, False, True])
    train_t, val_t = split_labelled(has_truth, 0.4)
    np.testing.assert_array_equal(val_t, [7, 9])  # the last 40 % of the 6 labelled fields (rounded), not 8
    np.testing.assert_array_equal(train_t, [0, 1, 2, 3, 4, 5, 6, 8])
    assert set(split_labelled(has_truth, 0.0)[0]) == set(range(10))


def test_unlabelled_coarse_fields_are_learnt_from_the_teacher(data, teacher, tmp_path):
    hr, lr = data
    ref, later = slice(0, 4), slice(4, 10)
    runs = {}
    for name, extra in (("alone", None), ("with", lr.isel(time=later))):
        runs[name] = xds.distill(teacher, "maunet-light", hr.isel(time=ref), lr=lr.isel(time=ref), alpha=1.0,
                                 unlabelled=extra, checkpoint=tmp_path / f"{name}.pt", learning_rate=3e-3,
                                 **{**OPTS, "epochs": 3})
    meta = runs["with"].meta
    assert meta["distillation"]["unlabelled_times"] == 6
    assert (meta["training"]["train_times"], meta["training"]["val_times"]) == (9, 1)
    # on the coarse-only fields, the student that saw the teacher's outputs there is closer to the teacher
    t_out = xds.predict(lr.isel(time=later), model=teacher, like=hr)
    gap = {k: float(xds.evaluate(xds.predict(lr.isel(time=later), model=m, like=hr), t_out)["rmse"])
           for k, m in runs.items()}
    assert gap["with"] < gap["alone"]


def test_unlabelled_fields_must_not_repeat_labelled_times(data, teacher, tmp_path):
    hr, lr = data
    with pytest.raises(xds.DataError, match="also have a fine truth"):
        xds.distill(teacher, "maunet-light", hr.isel(time=slice(0, 6)), lr=lr.isel(time=slice(0, 6)),
                    unlabelled=lr.isel(time=slice(4, 10)), checkpoint=tmp_path / "x.pt", **OPTS)


def test_unlabelled_fields_of_a_coarsened_pair(data, teacher, tmp_path):
    hr, _ = data
    student = xds.distill(teacher, "maunet-light", hr.isel(time=slice(0, 5)),
                          unlabelled=xds.coarsen(hr.isel(time=slice(5, 10)), 2), checkpoint=tmp_path / "c.pt",
                          **{**OPTS, "epochs": 1})
    assert student.meta["distillation"]["unlabelled_times"] == 5


def test_a_teacher_ensemble_is_the_mean_of_its_members(data, teacher, tmp_path):
    from xdownscale.families.distillation.teachers import TeacherEnsemble

    hr, lr = data
    second = xds.fit(hr, lr=lr, model="maunet", width=8, depth=2, checkpoint=tmp_path / "t2.pt",
                     **{**OPTS, "seed": 1, "epochs": 1})
    ens = TeacherEnsemble([teacher.module.eval(), second.module.eval()])
    x = torch.randn(2, 1, 8, 8)
    with torch.no_grad():
        torch.testing.assert_close(ens(x), (teacher.module(x) + second.module(x)) / 2)
    student = xds.distill([teacher, second], "maunet-light", hr, lr=lr, checkpoint=tmp_path / "s.pt",
                          **{**OPTS, "epochs": 1})
    record = student.meta["distillation"]
    assert record["teacher"] == ["maunet", "maunet"]
    assert record["teacher_checkpoint_sha256"] == [teacher.checkpoint_hash, second.checkpoint_hash]


def test_ensemble_members_must_share_their_normalisation(data, teacher, tmp_path):
    hr, lr = data
    other = xds.fit(hr + 10.0, lr=lr + 10.0, model="maunet", width=8, depth=2, checkpoint=tmp_path / "o.pt",
                    **{**OPTS, "epochs": 1})
    with pytest.raises(xds.DataError, match="normalisation"):
        xds.distill([teacher, other], "maunet-light", hr, lr=lr, checkpoint=tmp_path / "s.pt", **OPTS)
    with pytest.raises(xds.DataError, match="holds no model"):
        xds.distill([], "maunet-light", hr, lr=lr, checkpoint=tmp_path / "s.pt", **OPTS)


def test_feature_affinity_compares_networks_of_any_width():
    from xdownscale.families.distillation.feature_hints import affinity, affinity_loss

    torch.manual_seed(0)
    wide, narrow = torch.randn(2, 32, 12, 12), torch.randn(2, 8, 12, 12)
    assert affinity(wide, (10, 10)).shape == affinity(narrow, (10, 10)).shape == (2, 100, 100)
    # per-cell normalisation: scaling the channels changes nothing, and a feature map matches itself
    torch.testing.assert_close(affinity(3.0 * narrow, (12, 12)), affinity(narrow, (12, 12)))
    assert float(affinity_loss(narrow, [narrow], (12, 12))) < 1e-10
    assert float(affinity_loss(narrow, [wide], (12, 12))) > 1e-3
    assert torch.diagonal(affinity(wide, (12, 12)), dim1=1, dim2=2).allclose(torch.ones(2, 144))


def test_feature_hints_train_and_leave_no_hooks_behind(data, teacher, tmp_path):
    hr, lr = data
    student = xds.distill(teacher, "maunet-light", hr, lr=lr, hint_weight=1.0, checkpoint=tmp_path / "h.pt",
                          **{**OPTS, "epochs": 1})
    assert student.meta["distillation"]["hint_weight"] == 1.0
    assert not teacher.module.body.decoders[-1]._forward_hooks
    assert not student.module.body.decoders[-1]._forward_hooks
    with pytest.raises(xds.DataError, match="U-Net bodies"):
        xds.distill(teacher, "cnn", hr, lr=lr, hint_weight=1.0, checkpoint=tmp_path / "c.pt", **OPTS)
