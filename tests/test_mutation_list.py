"""ci/mutation.py stays usable: every mutant still applies to the code, and aims at tests that exist.

(The mutation run itself is slow and not part of the test suite: ``python ci/mutation.py``.)"""
from __future__ import annotations

import importlib.util
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def _mutation_module():
    spec = importlib.util.spec_from_file_location("ci_mutation", ROOT / "ci" / "mutation.py")
    mod = importlib.util.module_from_spec(spec)
    sys.modules[spec.name] = mod  # dataclasses look their module up there
    spec.loader.exec_module(mod)
    return mod


MUTANTS = _mutation_module().MUTANTS


@pytest.mark.parametrize("mutant", MUTANTS, ids=[m.id for m in MUTANTS])
def test_mutant_applies_exactly_once_and_changes_the_code(mutant):
    text = (ROOT / mutant.path).read_text(encoding="utf-8")
    assert text.count(mutant.old) == 1, f"{mutant.id}: update its pattern in ci/mutation.py"
    assert mutant.new != mutant.old
    for t in mutant.tests:
        assert (ROOT / t).is_file(), t


def test_mutant_ids_are_unique_and_cover_the_core_modules():
    ids = [m.id for m in MUTANTS]
    assert len(ids) == len(set(ids))
    paths = {m.path for m in MUTANTS}
    for module in ("nn/constraints.py", "grid/coarsen.py", "engine/field_predict.py", "io/resumable.py",
                   "engine/checkpoint.py", "metrics/conservation.py", "metrics/deterministic.py",
                   "models/diffusion/schedulers.py"):
        assert f"xdownscale/{module}" in paths, module
