"""Feature-affinity hints for distillation between networks of different widths.

The outputs carry one number per fine cell; a teacher's last feature map carries
tens. Matching the student's features to the teacher's gives the student that
richer signal, but the widths differ, so the features themselves cannot be
compared. Their spatial affinity can (as in FAKD, He et al. 2020, for image
super-resolution): at each cell the channel vector is normalised to unit length,
and the matrix of cosine similarities between cells (pooled to at most
``size`` x ``size`` cells) is the same size for any width. The hint loss is the
mean squared difference between the student's and the teacher's matrices (for
a teacher ensemble, the members' mean matrix).
"""
from __future__ import annotations

import torch
import torch.nn.functional as F

from ...errors import DataError


class FeatureTap:
    """Keeps the output of one submodule from its latest forward pass."""

    def __init__(self, module: torch.nn.Module):
        self.features = None
        self._handle = module.register_forward_hook(self._keep)

    def _keep(self, module, inputs, output):
        self.features = output

    def close(self) -> None:
        self._handle.remove()
        self.features = None


def hint_layer(net: torch.nn.Module, role: str) -> torch.nn.Module:
    """The last decoder unit of a U-Net body (the feature map its 1x1 tail reads)."""
    body = getattr(net, "body", net)
    decoders = getattr(body, "decoders", None)
    if not decoders:
        raise DataError(f"hint_weight needs U-Net bodies (maunet, maunet-light); the {role} "
                        f"({type(body).__name__}) has no decoder features to compare")
    return decoders[-1]


def affinity(features: torch.Tensor, shape, size: int = 24) -> torch.Tensor:
    """Cosine similarity between the cells of ``features`` cropped to ``shape`` and pooled to <= size^2 cells."""
    f = features[..., : shape[0], : shape[1]]
    f = F.adaptive_avg_pool2d(f, (min(size, shape[0]), min(size, shape[1]))).flatten(2)
    f = F.normalize(f, dim=1)
    return f.transpose(1, 2) @ f


def affinity_loss(student: torch.Tensor, teachers: list[torch.Tensor], shape) -> torch.Tensor:
    with torch.no_grad():
        target = torch.stack([affinity(t, shape) for t in teachers]).mean(0)
    return ((affinity(student, shape) - target) ** 2).mean()
