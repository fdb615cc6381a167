"""Export a trained deterministic model for edge/operational use: ONNX, TorchScript, torch.export.

``xds.export(model, "m.onnx")`` writes the whole :class:`~xdownscale.models.DownscalingNet`
(interpolation skip, body, de-normalisation and the constraint layer) as one graph
with three inputs, the same as the PyTorch module:

* ``x``: (B, C, h, w) float32 coarse inputs, normalised: ``(value - mean) / std`` per
  channel with the statistics stored in the file's metadata (``normalization``);
* ``weights``: (1, 1, H, 1) float32 fine-row cell weights (cos latitude on lat/lon
  grids, ones on projected grids) used by the area-weighted constraint;
* ``coarse``: (B, 1, h, w) float32 physical coarse field that a hard constraint conserves;

and one output ``y``: (B, 1, h*f, w*f) float32 fine field in physical units. The batch
size is dynamic; the tile size (h, w) is fixed at export (``tile=``, default 32x32
coarse cells): fields of other sizes go through in overlapping tiles with a halo of
the model's ``receptive_radius`` (stored in the metadata), as ``engine/infer`` does.
Fixed tiles keep every model exportable (U-Net padding and interpolation sizes become
constants) and let runtimes plan memory ahead. The suffix picks the format: ``.onnx`` (needs the ``onnx``
and ``onnxscript`` packages; run with onnxruntime), ``.ts``/``.pt`` (TorchScript by
tracing, ``torch.jit.load``), ``.pt2`` (``torch.export``, ``torch.export.load``). The
checkpoint metadata (network, variable, normalisation, units) travels in the file as
JSON: ONNX ``metadata_props["xdownscale"]``, an extra file ``meta.json`` otherwise.
"""
from __future__ import annotations

import json
import logging
import os
import warnings
from pathlib import Path

from .errors import DataError

log = logging.getLogger("xdownscale")
FORMATS = {".onnx": "onnx", ".ts": "torchscript", ".pt": "torchscript", ".pt2": "torch.export"}
INPUT_NAMES = ("x", "weights", "coarse")


def example_inputs(downscaler, ny: int = 32, nx: int = 32, batch: int = 2, seed: int = 0):
    """Random example inputs (x, weights, coarse) for the model's channels, with consistent ``coarse``."""
    import torch

    g = torch.Generator().manual_seed(seed)
    net, f = downscaler.module, downscaler.factor
    c = int(downscaler.config.get("in_channels", 1))
    x = torch.randn(batch, c, ny, nx, generator=g)
    weights = (0.5 + torch.rand(1, 1, ny * f, 1, generator=g))
    coarse = x[:, :1] * net.std + net.mean
    return x, weights, coarse


def _metadata(downscaler) -> str:
    keep = ("network", "variable", "attrs", "predictors", "covariates", "normalization", "grid")
    meta = {k: downscaler.meta[k] for k in keep if k in downscaler.meta}
    meta["inputs"] = list(INPUT_NAMES)
    meta["receptive_radius"] = int(downscaler.module.receptive_radius)
    meta["checkpoint_sha256"] = downscaler.checkpoint_hash
    return json.dumps(meta, default=float)


def _dynamic_batch() -> dict:
    import torch

    batch = torch.export.Dim("batch", min=1, max=4096)
    return {"x": {0: batch}, "weights": None, "coarse": {0: batch}}


def _export_onnx(module, inputs, path: Path, meta: str, opset: int | None) -> None:
    import torch

    try:
        import onnx
    except ImportError as exc:
        raise ImportError("ONNX export needs the optional packages onnx and onnxscript: "
                          "pip install 'xdownscale[export]'") from exc
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        # the tracing exporter (the torch.export-based one, dynamo=True, took ~10x longer here
        # for the same graph): batch dynamic, tile size fixed
        torch.onnx.export(module, inputs, str(path), dynamo=False, input_names=list(INPUT_NAMES),
                          output_names=["y"], opset_version=opset or 17,
                          dynamic_axes={"x": {0: "batch"}, "coarse": {0: "batch"}, "y": {0: "batch"}})
    model = onnx.load(str(path))
    entry = model.metadata_props.add()
    entry.key, entry.value = "xdownscale", meta
    onnx.save(model, str(path))


def export(model, path: str | os.PathLike, *, tile: tuple[int, int] = (32, 32), example=None,
           opset: int | None = None) -> Path:
    """Write ``model`` (a :class:`Downscaler`, checkpoint path or stored model name) to ``path``.

    The format follows the suffix (``.onnx``, ``.ts``/``.pt``, ``.pt2``; see the module
    docstring). ``tile``: the coarse (h, w) the exported graph takes; ``example``: the
    (x, weights, coarse) tensors to trace with instead (default: random ones of ``tile``).
    Returns the path.
    """
    import torch

    from .engine.exporters import ExportedNet
    from .engine.record import MULTI_TARGET_SECTION
    from .engine.resolve import resolve_model
    from .models import model_info

    downscaler = resolve_model(model)
    if model_info(downscaler.model_name).get("probabilistic"):
        raise DataError(f"{downscaler.model_name!r} is probabilistic: export() handles deterministic models only")
    if MULTI_TARGET_SECTION in downscaler.meta:
        raise DataError(f"this model has several targets ({downscaler.variable}): export() handles single-target "
                        "models only for now; train one model per variable to export")
    path = Path(path)
    kind = FORMATS.get(path.suffix.lower())
    if kind is None:
        raise DataError(f"unknown export format {path.suffix!r} for {str(path)!r}: use one of "
                        f"{', '.join(FORMATS)}")
    path.parent.mkdir(parents=True, exist_ok=True)
    module = ExportedNet(downscaler.module.cpu().eval()).eval()
    inputs = tuple(example) if example is not None else example_inputs(downscaler, *tile)
    meta = _metadata(downscaler)
    with torch.no_grad():
        if kind == "onnx":
            _export_onnx(module, inputs, path, meta, opset)
        elif kind == "torchscript":
            with warnings.catch_warnings():
                warnings.simplefilter("ignore", torch.jit.TracerWarning)
                traced = torch.jit.trace(module, inputs, check_trace=False)
            torch.jit.save(traced, str(path), _extra_files={"meta.json": meta})
        else:
            program = torch.export.export(module, inputs, dynamic_shapes=_dynamic_batch())
            torch.export.save(program, str(path), extra_files={"meta.json": meta})
    log.info("exported %s x%d to %s (%s)", downscaler.model_name, downscaler.factor, path, kind)
    return path


def read_metadata(path: str | os.PathLike) -> dict:
    """The xdownscale metadata stored in an exported file."""
    path = Path(path)
    kind = FORMATS.get(path.suffix.lower())
    if kind == "onnx":
        import onnx

        props = {p.key: p.value for p in onnx.load(str(path), load_external_data=False).metadata_props}
        return json.loads(props["xdownscale"])
    import torch

    files = {"meta.json": ""}
    if kind == "torchscript":
        torch.jit.load(str(path), _extra_files=files)
    else:
        torch.export.load(str(path), extra_files=files)
    return json.loads(files["meta.json"])
