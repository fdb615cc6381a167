#!/usr/bin/env python
"""Mutation check: does the test suite see realistic single bugs in the core modules?

Each mutant below is one small, plausible mistake (a dropped weight, an off-by-one halo,
``weights_only=False``, ...) in constraints, coarsening, halos, resumable writes, checkpoint
loading, metrics, diffusion schedulers or output writing. For every mutant the script copies
the project into a temporary folder, applies the one-line change there (the working tree is
never touched), runs the tests that should catch it and reports *caught* (tests fail) or
*survived* (tests pass). An unmutated run of the same tests comes first: if it fails, nothing
is scored.

    python ci/mutation.py                 # all mutants, targeted tests (a few minutes on 2 cores)
    python ci/mutation.py --list          # the mutants and their tests
    python ci/mutation.py halo-default-short ddim-ignores-eta
    python ci/mutation.py --full          # whole test files instead of the -k selections
    python ci/mutation.py --json out.json

Exit status: 0 when every mutant is caught, 1 when one survived, 2 on a harness error
(a mutant that no longer applies, a failing unmutated run). Not part of ``pytest``: the
tests/ folder only checks that every mutant still applies (tests/test_mutation_list.py).
"""
from __future__ import annotations

import argparse
import json
import os
import shutil
import subprocess
import sys
import tempfile
import time
from dataclasses import dataclass
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]


@dataclass(frozen=True)
class Mutant:
    id: str
    path: str  # relative to the repository root
    old: str  # must occur exactly once in the file
    new: str
    tests: tuple[str, ...]  # test files
    k: str | None = None  # pytest -k selection (ignored with --full)
    what: str = ""


MUTANTS: tuple[Mutant, ...] = (
    # -- constraints ---------------------------------------------------------------------------------
    Mutant("constraint-block-mean-unweighted", "xdownscale/nn/constraints.py",
           "return F.avg_pool2d(y * w, factor) / F.avg_pool2d(w, factor)", "return F.avg_pool2d(y, factor)",
           ("tests/test_constraints.py",), None, "block mean P ignores the cos(lat) cell weights"),
    Mutant("constraint-softmax-unweighted", "xdownscale/nn/constraints.py",
           "scale = upsample_nearest(x / block_mean(e, f, weights), f)",
           "scale = upsample_nearest(x / block_mean(e, f), f)",
           ("tests/test_constraints.py",), None, "softmax rescaling forgets the weights"),
    Mutant("constraint-add-sign", "xdownscale/nn/constraints.py",
           "return y + upsample_nearest(x - block_mean(y, self.factor, weights), self.factor)",
           "return y + upsample_nearest(block_mean(y, self.factor, weights) - x, self.factor)",
           ("tests/test_constraints.py",), None, "additive correction with the wrong sign"),
    Mutant("constraint-scadd-direction", "xdownscale/nn/constraints.py",
           "s = -torch.sign(d)", "s = torch.sign(d)",
           ("tests/test_constraints.py",), None, "scadd scales towards the wrong bound"),
    # -- missing coarse cells: one fill rule for training and prediction -------------------------------
    Mutant("training-fills-missing-with-the-mean", "xdownscale/data/patches.py",
           "x = np.nan_to_num(fill_nearest(np.stack(channels)), nan=0.0)",
           "x = np.nan_to_num(np.stack(channels), nan=0.0)",
           ("tests/test_fill.py",), None, "training sees mean-filled coasts, prediction nearest-filled ones"),
    Mutant("temporal-prediction-packs-inputs-variable-major", "xdownscale/families/temporal/predict.py",
           "for m in range(frames.shape[1]) for d in datas]", "for d in datas for m in range(frames.shape[1])]",
           ("tests/test_multi_target_temporal.py",), None,
           "prediction interleaves the window's frames of several inputs otherwise than training"),
    Mutant("temporal-multi-target-conserves-input-k", "xdownscale/families/temporal/multi.py",
           "inputs, stats, time_factor, gaps, sources)", "inputs, stats, time_factor, gaps, list(range(len(sources))))",
           ("tests/test_multi_target_temporal.py",), None, "target k conserves input k, not its own source"),
    Mutant("multi-target-training-fills-missing-with-the-mean", "xdownscale/data/multi.py",
           "x = np.nan_to_num(fill_nearest(np.stack(", "x = np.nan_to_num((np.stack(",
           ("tests/test_fill.py",), None, "multi-target training mean-fills coasts (prediction: nearest)"),
    Mutant("prediction-fills-missing-with-the-mean", "xdownscale/engine/infer.py",
           "        x = fill_nearest(x)  # every channel", "        pass  # every channel",
           ("tests/test_fill.py",), None, "prediction stops filling missing cells from their neighbours"),
    Mutant("prediction-fills-only-the-target-channel", "xdownscale/engine/infer.py",
           "        x = fill_nearest(x)  # every channel", "        x[:, :1] = fill_nearest(x[:, :1])  # every channel",
           ("tests/test_fill.py",), None, "prediction fills the target channel only, not the predictors"),
    Mutant("fill-lands-in-a-reordered-copy", "xdownscale/data/fill.py",
           'maps = np.array(maps, copy=True, order="C")', "maps = np.array(maps, copy=True)",
           ("tests/test_fill.py",), None, "transposed multi-channel blocks come back unfilled (zeros in prediction)"),
    # -- coarsening and cell weights -----------------------------------------------------------------
    Mutant("coarsen-unweighted", "xdownscale/grid/coarsen.py",
           'w = area_weights(da, axes).astype("float64")',
           'w = xr.ones_like(area_weights(da, axes)).astype("float64")',
           ("tests/test_grid.py",), "coarsen", "block mean without area weights"),
    Mutant("coarsen-counts-nan-cells", "xdownscale/grid/coarsen.py",
           "den = (plain.notnull() * w).coarsen(window).sum()",
           "den = (xr.ones_like(plain) * w).coarsen(window).sum()",
           ("tests/test_grid.py",), "coarsen", "NaN cells counted as zeros in the block mean"),
    Mutant("latitude-weights-in-degrees", "xdownscale/grid/cf.py",
           'np.cos(np.deg2rad(np.asarray(lat, dtype="float64")))', 'np.cos(np.asarray(lat, dtype="float64"))',
           ("tests/test_grid.py",), "coarsen or area", "cos of degrees taken as radians"),
    # -- halo and laziness ---------------------------------------------------------------------------
    Mutant("halo-default-short", "xdownscale/engine/field_predict.py",
           "halo = net.receptive_radius if halo is None else int(halo)",
           "halo = net.receptive_radius - 1 if halo is None else int(halo)",
           ("tests/test_infer.py",), "halo", "default halo one cell below the receptive radius"),
    Mutant("halo-warning-off-by-one", "xdownscale/engine/field_predict.py",
           "if halo < net.receptive_radius:", "if halo < net.receptive_radius - 1:",
           ("tests/test_infer.py",), "halo", "short-halo warning misses a halo one cell short"),
    Mutant("predict-computes-dask-input", "xdownscale/engine/field_predict.py",
           "planned = not isinstance(lr.data, dsa.Array)", "planned = True",
           ("tests/test_infer.py",), "lazy", "a Dask input is rechunked and checked eagerly while building the graph"),
    Mutant("lazy-all-nan-unchecked", "xdownscale/engine/field_predict.py",
           "    if not planned:  # a Dask input stays lazy", "    if False:  # a Dask input stays lazy",
           ("tests/test_contract.py",), "lazy_all_nan", "a lazy all-NaN input passes through predict"),
    # -- resumable writes and atomic files -----------------------------------------------------------
    Mutant("resume-fingerprint-ignores-coords", "xdownscale/io/resumable.py",
           "        if name not in ds.data_vars:\n", "        if False:\n",
           ("tests/test_resume.py",), "shifted or refused", "a partial store of a shifted grid is resumed"),
    Mutant("resume-fingerprint-ignores-chunks", "xdownscale/io/resumable.py",
           "str(var.dtype), var.chunks, sorted(", "str(var.dtype), None, sorted(",
           ("tests/test_resume.py",), "shifted or refused", "a partial store with other chunks is resumed"),
    Mutant("stale-temp-removes-live-ones", "xdownscale/io/atomic.py",
           "if m is None or process_alive(int(m.group(1))):", "if m is None:",
           ("tests/test_io.py",), "stale", "cleanup deletes the temporary of a write still running"),
    Mutant("cf-time-axis-keeps-reference-time", "xdownscale/io/cf.py",
           'if std in (None, "time") or not _is_datetime(t):', "if True:",
           ("tests/test_io.py",), "grib", "GRIB time axis written as forecast_reference_time"),
    # -- checkpoint loading --------------------------------------------------------------------------
    Mutant("checkpoint-unpickles", "xdownscale/engine/checkpoint.py",
           'torch.load(path, map_location="cpu", weights_only=True)',
           'torch.load(path, map_location="cpu", weights_only=False)',
           ("tests/test_checkpoint.py",), None, "checkpoints unpickled (runs code from the file)"),
    # -- metrics -------------------------------------------------------------------------------------
    Mutant("mass-violation-unweighted", "xdownscale/metrics/conservation.py",
           "out = wmean(err, weights_for(err, axes, weighted), reduce_dims(err, dim))",
           "out = wmean(err, weights_for(err, axes, False), reduce_dims(err, dim))",
           ("tests/test_metrics.py",), "mass_violation", "mass violation averaged without area weights"),
    Mutant("mass-violation-signed", "xdownscale/metrics/conservation.py",
           "return abs(coarse - lr), lr, axes", "return (coarse - lr), lr, axes",
           ("tests/test_metrics.py",), "mass_violation", "signed errors cancel in the mass violation"),
    Mutant("mse-absolute", "xdownscale/metrics/deterministic.py",
           'return named(wmean(err**2, w if weighted else None, dims), "mse")',
           'return named(wmean(abs(err), w if weighted else None, dims), "mse")',
           ("tests/test_metrics.py",), "pointwise or area_weighting", "MSE computed from |error|"),
    Mutant("ssim-k2", "xdownscale/metrics/ssim.py",
           "K1, K2 = 0.01, 0.03", "K1, K2 = 0.01, 0.3",
           ("tests/test_metrics.py",), "ssim", "SSIM contrast constant off by 10"),
    Mutant("ssim-nan-window-not-renormalised", "xdownscale/metrics/ssim.py",
           "            return _gauss(a) * norm\n", "            return _gauss(a)\n",
           ("tests/test_metrics.py",), "ssim", "SSIM window statistics count NaN cells as zeros"),
    # -- diffusion schedulers ------------------------------------------------------------------------
    Mutant("ddim-ignores-eta", "xdownscale/models/diffusion/schedulers.py",
           "out = out + sigma * _noise_like(x_t, generator)", "out = out",
           ("tests/test_diffusion.py",), "eta or oracle or ddpm", "DDIM never adds the eta noise"),
    Mutant("ddim-drops-sigma2", "xdownscale/models/diffusion/schedulers.py",
           "(1 - a_s - sigma**2)", "(1 - a_s)",
           ("tests/test_diffusion.py",), "eta or oracle or ddpm", "DDIM direction term without -sigma^2"),
    Mutant("ddpm-large-variance", "xdownscale/models/diffusion/schedulers.py",
           "var = beta * (1 - a_s) / (1 - a_t)", "var = beta",
           ("tests/test_diffusion.py",), "eta or oracle or ddpm or posterior",
           "DDPM posterior variance replaced by beta"),
    # -- the weight average of the shared trainer ------------------------------------------------------
    Mutant("average-lost-on-resume", "xdownscale/engine/trainer.py",
           'average = WeightAverage(net, cfg.ema, resume.get("average_state_dict") if resume else None)',
           "average = WeightAverage(net, cfg.ema, None)",
           ("tests/test_resume.py",), "interrupted_training", "a resumed run restarts its weight average"),
    Mutant("average-not-validated", "xdownscale/engine/trainer.py",
           "            with average.applied(net):\n                val_average",
           "            with __import__(\"contextlib\").nullcontext():\n                val_average",
           ("tests/test_recipe.py",), "best_validation", "the raw weights validated twice, the average never"),
    Mutant("average-validated-alone", "xdownscale/engine/trainer.py",
           "        use_average = val_average is not None and val_average < val_raw",
           "        use_average = val_average is not None",
           ("tests/test_recipe.py",), "raw_and_average", "once ready, the average is kept even where the raw "
           "weights validate better"),
    # -- cross-variable consistency and the multi-target families (issue #15) -------------------------
    Mutant("consistency-no-redistribution", "xdownscale/nn/consistency.py",
           "    out = yc + torch.where(deficit > 0, up, down)", "    out = yc",
           ("tests/test_consistency.py",), None, "bounds clamp without handing the block's amount back"),
    Mutant("coarse-breach-not-warned", "xdownscale/families/spatial/multi.py",
           "    warn_coarse_breaches(info.get(\"consistency\") or [], targets, inputs, sources)", "    pass",
           ("tests/test_consistency.py",), "coarse_input_that_breaks",
           "a coarse input that breaks a rule goes unreported"),
    Mutant("cli-predict-drops-the-constraint", "xdownscale/cli/commands.py",
           "        options[\"constraint\"] = _predict_constraint(args.constraint)",
           "        _predict_constraint(args.constraint)",
           ("tests/test_cli_families.py", "tests/test_multi_target_diffusion_liif.py"), "constraint",
           "predict --constraint is parsed but not applied"),
    Mutant("consistency-dewpoint-plain-min", "xdownscale/nn/consistency.py",
           "        depression = mean_preserving_clip(y[b] - y[a], 0.0, math.inf, factor, weights)",
           "        depression = torch.clamp(y[b] - y[a], min=0.0)",
           ("tests/test_consistency.py",), None, "d2m<=t2m by a plain clip: d2m loses its block means"),
    Mutant("diffusion-multi-first-guess-wrong-stats", "xdownscale/models/diffusion/multi.py",
           "        mu = [lerp[:, s : s + 1] * self.in_std[:, s : s + 1] + self.in_mean[:, s : s + 1] if s is not None",
           "        mu = [lerp[:, s : s + 1] * self.in_std[:, :1] + self.in_mean[:, :1] if s is not None",
           ("tests/test_multi_target_diffusion_liif.py",), None,
           "every target's first guess de-normalised with the first input's statistics"),
    # -- liif's recipe (issue #13) ---------------------------------------------------------------------
    Mutant("liif-integer-share-ignored", "xdownscale/families/implicit/fit.py",
           "        if self.integer_share > 0 and self.integers and rng.random() < self.integer_share:",
           "        if False:",
           ("tests/test_liif.py",), "integer_share", "every training batch at a uniform real scale"),
    Mutant("model-learning-rate-lost", "xdownscale/fitting.py",
           "        learning_rate = defaults.get(\"learning_rate\", TrainConfig.learning_rate)",
           "        learning_rate = TrainConfig.learning_rate",
           ("tests/test_liif.py",), "learning_rate", "a model's own learning rate replaced by the shared one"),
    Mutant("model-train-defaults-lost", "xdownscale/models/_registry.py",
           'return {**getattr(family_of(name), "train_defaults", {}), **model_info(name).get("train_defaults", {})}',
           'return dict(getattr(family_of(name), "train_defaults", {}))',
           ("tests/test_unet.py", "tests/test_liif.py"), "own_default or learning_rate",
           "a model's own training defaults dropped: only its family's count"),
    Mutant("adversarial-weight-heavy-again", "xdownscale/families/stochastic/adversarial.py",
           "    adv_weight: float = 0.01\n", "    adv_weight: float = 0.05\n",
           ("tests/test_gan.py",), "lighter_adversarial or across_tiles", "the ensembles train with the heavier "
           "adversarial term that lost to the deterministic MAE at x2"),
    Mutant("liif-validation-not-capped", "xdownscale/families/implicit/fit.py",
           "max(cfg.batch_size, min(n_train // 4, VAL_WINDOWS))", "max(cfg.batch_size, n_train // 4)",
           ("tests/test_liif.py",), "validation_windows", "liif validates on a quarter of an epoch again"),
    Mutant("liif-pair-window-misplaced", "xdownscale/families/implicit/pair.py",
           "slice(cy * f, cy * f + by), slice(cx * f, cx * f + bx)", "slice(cy, cy + by), slice(cx, cx + bx)",
           ("tests/test_liif_predictors.py",), "pair", "a pair's fine window is cut at the coarse indices"),
    Mutant("liif-base-in-target-units", "xdownscale/models/liif.py",
           "sample_bicubic(x[:, self.base_index], coords) * self.base_std + self.base_mean",
           "sample_bicubic(x[:, self.base_index], coords) * self.std + self.mean",
           ("tests/test_liif_predictors.py",), None, "a base is de-normalised with its target's statistics, not "
           "its input's"),
    Mutant("rnngan-halo-ignores-recurrence", "xdownscale/models/rnngan.py",
           "        return max(self.body.radius(self.window), super().receptive_radius)\n\n"
           "    def sequence(self, x: torch.Tensor, weights=None, coarse=None, noise=None) -> torch.Tensor:\n"
           '        """(B, T, C[+noise], h, w) -> (B, T, 1, H, W)',
           "        return super().receptive_radius\n\n"
           "    def sequence(self, x: torch.Tensor, weights=None, coarse=None, noise=None) -> torch.Tensor:\n"
           '        """(B, T, C[+noise], h, w) -> (B, T, 1, H, W)',
           ("tests/test_gan.py",), "across_tiles", "rnngan tiles with a halo that forgets the window's reach"),
    Mutant("adversarial-budget-counts-epochs", "xdownscale/families/stochastic/__init__.py",
           'train_defaults = {"max_updates": 600}', 'train_defaults = {"epochs": 20}',
           ("tests/test_gan.py",), "budget_of_its_own", "gan's budget depends on the archive's size again"),
    Mutant("default-budget-caps-a-time-budget", "xdownscale/fitting.py",
           '        if max_minutes is None:\n            max_updates = defaults.get("max_updates")\n',
           '        max_updates = defaults.get("max_updates")\n',
           ("tests/test_gan.py",), "budget_of_its_own", "a family's update budget cuts short a budget in minutes"),
    Mutant("diffusion-budget-counts-epochs", "xdownscale/families/diffusion/__init__.py",
           '"max_updates": 300}', '"epochs": 20}',
           ("tests/test_diffusion.py",), "300_updates", "diffusion's budget depends on the archive's size again"),
    Mutant("diffusion-stops-before-learning", "xdownscale/families/diffusion/fit.py",
           "if bad >= cfg.patience and budget.progress() >= cfg.min_fraction:", "if bad >= cfg.patience:",
           ("tests/test_diffusion.py",), "half_its_budget", "a diffusion run stops on its first rounds again"),
    Mutant("covariates-cut-by-position", "xdownscale/data/covariates.py",
           "labelled = fine_coords is not None and all(",
           "labelled = False and all(",
           ("tests/test_covariates_by_label.py",), None, "a larger static field is refused instead of cut by label"),
    Mutant("covariates-edge-takes-nearest", "xdownscale/data/covariates.py",
           "tolerance = 0.5 * float(np.min(np.abs(np.diff(c)))) if len(c) > 1 else np.inf",
           "tolerance = np.inf",
           ("tests/test_covariates_by_label.py",), None, "fine cells beyond the covariate's domain copy its edge"),
    Mutant("trainer-hides-a-run-worse-than-its-start", "xdownscale/engine/trainer.py",
           "if start_val is not None and best > start_val and rank == 0:",
           "if start_val is not None and best > 10 * start_val and rank == 0:",
           ("tests/test_recipe.py",), "start", "kept weights worse than the skip go unflagged"),
    Mutant("checkpoint-drops-the-start-loss", "xdownscale/engine/setup.py",
           'best_val_loss=state["best_val_loss"], start_val_loss=state.get("start_val_loss"))',
           'best_val_loss=state["best_val_loss"])',
           ("tests/test_recipe.py",), "start", "the checkpoint forgets the skip's validation loss"),
    Mutant("ddp-several-targets-train-in-one-process", "xdownscale/families/spatial/family.py",
           "if distributed.check_nproc(request.nproc, cfg) > 1:",
           "if distributed.check_nproc(request.nproc, cfg) > 1 and targets is None:",
           ("tests/test_ddp.py",), "several_targets", "nproc is silently ignored for several targets"),
    Mutant("trainer-forgets-channels-last", "xdownscale/engine/trainer.py",
           "        net.to(memory_format=torch.channels_last)\n",
           "        pass\n",
           ("tests/test_recipe.py",), "nhwc", "training runs the slower NCHW convolutions"),
    Mutant("convgru-halo-ignores-window", "xdownscale/models/convgru.py",
           "self.receptive_radius = 1 + 2 + self.window + 2 * residual_blocks + 1",
           "self.receptive_radius = 1 + 2 * residual_blocks",
           ("tests/test_temporal.py",), "round_trips_and_tiles", "convgru tiles with a halo that forgets its window"),
    Mutant("adversarial-stops-before-learning", "xdownscale/families/stochastic/adversarial.py",
           "if bad >= cfg.patience and adversarial and budget.progress() >= cfg.min_fraction:",
           "if bad >= cfg.patience and adversarial:",
           ("tests/test_gan.py",), "before_half", "a gan/rnngan run stops on its first noisy rounds again"),
    Mutant("adversarial-keeps-raw-weights", "xdownscale/families/stochastic/adversarial.py",
           "best_state = copy.deepcopy(average.weights() if use_average else gen.state_dict())",
           "best_state = copy.deepcopy(gen.state_dict())",
           ("tests/test_gan.py",), "averaged_generator", "the generator's average is scored but never kept"),
    Mutant("adversarial-average-lost-on-resume", "xdownscale/families/stochastic/adversarial.py",
           'WeightAverage(gen, cfg.ema, resume.get("average_state_dict") if resume else None)',
           "WeightAverage(gen, cfg.ema, None)",
           ("tests/test_gan.py",), "resume", "a resumed gan restarts its weight average"),
    Mutant("adversarial-validation-noise-unseeded", "xdownscale/families/stochastic/adversarial.py",
           "        torch.manual_seed(cfg.seed + 7919)\n", "",
           ("tests/test_gan.py",), "fixed_noise", "each validation round draws other noise"),
    Mutant("liif-softmax-takes-physical-values-as-log-mass", "xdownscale/families/implicit/predict.py",
           "out[:, j] = layer.project(torch.from_numpy(", "out[:, j] = layer(torch.from_numpy(",
           ("tests/test_liif.py",), "softmax_at_prediction", "softmax at prediction piles each block on one cell"),
    Mutant("projected-softmax-skips-the-log", "xdownscale/nn/constraints.py",
           "return self.forward(torch.log(y.clamp(min=1e-30)), x, weights)", "return self.forward(y, x, weights)",
           ("tests/test_constraints.py",), "projecting", "a finished field is taken as log-mass"),
    Mutant("zero-bound-from-the-minimum-alone", "xdownscale/data/normalize.py",
           'stats["min"] >= 0 and stats.get("zero_share", 0.0) >= ZERO_SHARE', 'stats["min"] >= 0',
           ("tests/test_liif.py",), "clipped", "a field that merely stayed positive is clipped at zero"),
    Mutant("liif-predicts-rain-below-zero", "xdownscale/models/liif.py",
           "out.clamp(min=self.lower_bound)", "out",
           ("tests/test_liif.py",), "stops_at_zero", "negative rain beside dry cells"),
    Mutant("multi-liif-predicts-rain-below-zero", "xdownscale/models/liif.py",
           "torch.maximum(out, self.lower)", "out",
           ("tests/test_multi_target_diffusion_liif.py",), "below_zero", "negative rain in a multi-target liif"),
    Mutant("rain-with-no-constraint-goes-unwarned", "xdownscale/engine/setup.py",
           "    if constraint in UNBOUNDED_CONSTRAINTS and zero_bounded(stats):",
           "    if False:",
           ("tests/test_fit_predict.py",), "warned_about", "negative rain predicted without a word"),
    Mutant("several-targets-unwarned", "xdownscale/engine/multi_setup.py",
           "        if not bounds_itself:\n            warn_if_unbounded(",
           "        if False:\n            warn_if_unbounded(",
           ("tests/test_fit_predict.py",), "name_the_one", "a multi-target fit says nothing of its rain"),
    Mutant("liif-warned-though-it-clamps", "xdownscale/families/implicit/fit.py",
           "model_kwargs=body,\n                    bounds_itself=True)", "model_kwargs=body)",
           ("tests/test_liif.py",), "stops_at_zero", "liif warns of negatives it never predicts"),
    Mutant("liif-rain-trains-at-whole-factors-only", "xdownscale/families/implicit/fit.py",
           "return 0.5 if any(b is not None for b in bounds) else 1.0", "return 1.0",
           ("tests/test_liif.py",), "stops_at_zero", "rain loses the scales in between that it needs"),
)


def _data_dir() -> str | None:
    env = os.environ.get("XDOWNSCALE_TEST_DATA")
    path = Path(env) if env else ROOT.parent / "shared" / "data"
    return str(path.resolve()) if path.is_dir() else None


def _copy_tree(dest: Path) -> None:
    ignore = shutil.ignore_patterns(".git", ".venv", "__pycache__", "*.pyc", ".pytest_cache", "*.egg-info",
                                    "benchmarks", "tutorials")
    shutil.copytree(ROOT, dest, ignore=ignore, symlinks=True)


def apply(m: Mutant, root: Path) -> None:
    """Apply ``m`` to the copy under ``root``; a mutant that no longer matches exactly once is an error."""
    f = root / m.path
    text = f.read_text(encoding="utf-8")
    n = text.count(m.old)
    if n != 1:
        raise LookupError(f"mutant {m.id}: {m.old!r} occurs {n} times in {m.path} (update ci/mutation.py)")
    f.write_text(text.replace(m.old, m.new), encoding="utf-8")


def _pytest(root: Path, tests, k, timeout: float, python: str) -> tuple[int, str, float]:
    cmd = [python, "-m", "pytest", "-q", "-x", "-p", "no:cacheprovider", "-o", "addopts=", *tests]
    if k:
        cmd += ["-k", k]
    env = {**os.environ, "PYTHONPATH": str(root), "PYTHONDONTWRITEBYTECODE": "1"}
    data = _data_dir()
    if data:
        env["XDOWNSCALE_TEST_DATA"] = data
    t0 = time.perf_counter()
    try:
        r = subprocess.run(cmd, cwd=root, env=env, capture_output=True, text=True, timeout=timeout, check=False)
        return r.returncode, (r.stdout + r.stderr)[-2000:], time.perf_counter() - t0
    except subprocess.TimeoutExpired:
        return 124, f"timed out after {timeout:.0f} s", time.perf_counter() - t0


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("ids", nargs="*", help="run only these mutants")
    ap.add_argument("--list", action="store_true", help="list the mutants and exit")
    ap.add_argument("--full", action="store_true", help="run the whole test files (no -k selection)")
    ap.add_argument("--timeout", type=float, default=900.0, help="seconds per pytest run")
    ap.add_argument("--json", help="also write the results to this file")
    ap.add_argument("--python", default=sys.executable, help="interpreter that runs pytest")
    args = ap.parse_args(argv)
    chosen = [m for m in MUTANTS if not args.ids or m.id in args.ids]
    unknown = set(args.ids) - {m.id for m in MUTANTS}
    if unknown:
        print(f"mutation: unknown mutant(s) {sorted(unknown)}; --list shows them", file=sys.stderr)
        return 2
    if args.list:
        for m in chosen:
            sel = "" if args.full or not m.k else f" -k {m.k!r}"
            print(f"{m.id:38s} {m.path}: {m.what}\n{'':38s} tests: {' '.join(m.tests)}{sel}")
        return 0
    results = []
    with tempfile.TemporaryDirectory(prefix="xds-mutation-") as tmp:
        copy = Path(tmp) / "repo"
        _copy_tree(copy)
        for m in chosen:  # every mutant must still apply before anything runs
            try:
                text = (copy / m.path).read_text(encoding="utf-8")
                if text.count(m.old) != 1:
                    raise LookupError(f"mutant {m.id}: {m.old!r} occurs {text.count(m.old)} times in {m.path}")
            except (LookupError, FileNotFoundError) as e:
                print(f"mutation: {e} (update ci/mutation.py)", file=sys.stderr)
                return 2
        groups = sorted({(m.tests, None if args.full else m.k) for m in chosen}, key=str)
        print(f"unmutated run of {len(groups)} test selection(s) ...", flush=True)
        for tests, k in groups:
            rc, out, secs = _pytest(copy, tests, k, args.timeout, args.python)
            if rc != 0:
                print(f"mutation: the unmutated tests fail ({' '.join(tests)} -k {k!r}, rc {rc}):\n{out}",
                      file=sys.stderr)
                return 2
        for m in chosen:
            original = (copy / m.path).read_text(encoding="utf-8")
            apply(m, copy)
            try:
                rc, out, secs = _pytest(copy, m.tests, None if args.full else m.k, args.timeout, args.python)
            finally:
                (copy / m.path).write_text(original, encoding="utf-8")
            status = "survived" if rc == 0 else "caught" if rc == 1 else f"error (rc {rc})"
            results.append({"id": m.id, "path": m.path, "what": m.what, "status": status, "seconds": round(secs, 1),
                            "tests": list(m.tests), "k": None if args.full else m.k})
            print(f"{status:>9s}  {m.id:38s} {secs:6.1f} s  {m.what}", flush=True)
            if rc not in (0, 1):
                print("           " + out.strip().replace("\n", "\n           ")[-600:])
    caught = sum(r["status"] == "caught" for r in results)
    survived = [r["id"] for r in results if r["status"] == "survived"]
    print(f"\nmutation score: {caught}/{len(results)} caught ({100.0 * caught / max(len(results), 1):.0f}%)"
          + (f"; survived: {', '.join(survived)}" if survived else ""))
    if args.json:
        Path(args.json).write_text(json.dumps(results, indent=1), encoding="utf-8")
    if survived:
        return 1
    return 0 if caught == len(results) else 2


if __name__ == "__main__":
    sys.exit(main())
