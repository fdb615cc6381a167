"""Training and prediction for temporal models (``convgru``, ``flowconvgru``).

- :class:`SequencePatchDataset`: random (packed window, fine target) patches
  from a series; windows come from :mod:`xdownscale.data.windows` (gaps never
  bridged, edge frames repeated).
- :func:`fit_temporal`: the ``fit_with`` hook (``xds.fit(model="convgru", ...)``).
- :func:`predict_temporal`: the ``predict_with`` hook: windowed, tiled (halo)
  prediction through :func:`xdownscale.engine.infer.tiled_predict`, one
  output per time step, optional ``time_factor``.
"""
from .dataset import SequencePatchDataset, pack_indices
from .fit import fit_temporal
from .predict import predict_temporal

__all__ = ["SequencePatchDataset", "fit_temporal", "pack_indices", "predict_temporal"]
