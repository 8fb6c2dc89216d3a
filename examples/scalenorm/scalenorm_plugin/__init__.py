"""A normbench plugin: ScaleNorm (Nguyen & Salazar 2019), added without editing normbench.

normbench imports this module in every run that lists it in ``plugins`` (``plugins=[scalenorm_plugin]``);
importing it registers the norm. Its config group option lives in ``conf/norm/scale.yaml``, found
through ``hydra.searchpath=[pkg://scalenorm_plugin.conf]``.
"""

import torch
from torch import nn

from normbench.norms import Norm, register_norm


class ScaleNorm(nn.Module):
    r"""ScaleNorm: :math:`y = g \, x / \lVert x \rVert` per sample, one learned scalar :math:`g`.

    Args:
        num_features: C (the initial :math:`g` is :math:`\sqrt{C}`, so the output has unit RMS).
        eps: the smallest norm divided by.

    Shape:
        - Input: :math:`(N, C, *)`.
        - Output: the same shape.
    """

    def __init__(self, num_features: int, eps: float = 1e-5):
        super().__init__()
        self.eps = eps
        self.g = nn.Parameter(torch.tensor(float(num_features) ** 0.5))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        norms = x.flatten(1).norm(dim=1).clamp(min=self.eps)
        return self.g * x / norms.view(-1, *[1] * (x.dim() - 1))


register_norm(Norm("scale", lambda num_features, dims, **options: ScaleNorm(num_features, **options),
                   frozenset({"eps"}), (ScaleNorm,)))
