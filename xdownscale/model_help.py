"""``model_options``: what ``fit`` and ``predict`` accept for a model beyond their own keywords."""
from __future__ import annotations

from .engine.contract import options_help
from .models import family_of, model_info


def model_options(name: str) -> dict[str, list[str]]:
    """``{"fit": [...], "predict": [...]}``: one ``name (type, default ...): help`` line per option
    of model ``name``, read from its family's options dataclasses (the same ones that check them)."""
    info = model_info(name)
    family = family_of(name)
    fit = options_help(family.fit_options(name)) if info["trainable"] else []
    return {"fit": fit, "predict": options_help(family.predict_options(name))}
