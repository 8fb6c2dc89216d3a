"""A GRU unrolled by a Python loop over time, for packed training.

PyTorch's fused ``nn.GRU`` has no batching rule under ``torch.func.vmap``; this layer computes
the same function from the same parameters with ops that have one.
"""

from __future__ import annotations

import torch
from torch import nn


class LoopGRU(nn.Module):
    r"""A one-layer, unidirectional, ``batch_first`` GRU with ``nn.GRU``'s parameters and maths.

    .. math::
        \begin{aligned}
        r_t &= \sigma(W_{ir} x_t + b_{ir} + W_{hr} h_{t-1} + b_{hr}) \\
        z_t &= \sigma(W_{iz} x_t + b_{iz} + W_{hz} h_{t-1} + b_{hz}) \\
        n_t &= \tanh(W_{in} x_t + b_{in} + r_t \odot (W_{hn} h_{t-1} + b_{hn})) \\
        h_t &= (1 - z_t) \odot n_t + z_t \odot h_{t-1}
        \end{aligned}

    The parameters are named as ``nn.GRU``'s (``weight_ih_l0``, ``weight_hh_l0``, ``bias_ih_l0``,
    ``bias_hh_l0``; gate order r, z, n), so a state dict moves between the two.

    Args:
        input_size, hidden_size: as in ``nn.GRU``.

    Shape:
        - Input: :math:`(N, T, \text{input\_size})`, optionally :math:`h_0` of shape :math:`(1, N, H)`.
        - Output: :math:`(N, T, H)` and :math:`h_T` of shape :math:`(1, N, H)`.
    Examples::

        >>> gru = torch.nn.GRU(3, 5, batch_first=True)
        >>> loop = LoopGRU(3, 5)
        >>> _ = loop.load_state_dict(gru.state_dict())
        >>> x = torch.randn(2, 4, 3)
        >>> torch.allclose(loop(x)[0], gru(x)[0], atol=1e-6)
        True
    """

    def __init__(self, input_size: int, hidden_size: int, device=None):
        super().__init__()
        self.input_size, self.hidden_size = input_size, hidden_size
        H = hidden_size
        self.weight_ih_l0 = nn.Parameter(torch.empty(3 * H, input_size, device=device))
        self.weight_hh_l0 = nn.Parameter(torch.empty(3 * H, H, device=device))
        self.bias_ih_l0 = nn.Parameter(torch.empty(3 * H, device=device))
        self.bias_hh_l0 = nn.Parameter(torch.empty(3 * H, device=device))

    @staticmethod
    def can_replace(gru: nn.GRU) -> bool:
        """Whether ``gru`` is the kind this layer computes (one layer, one direction, batch first, biases)."""
        return gru.num_layers == 1 and not gru.bidirectional and gru.batch_first and gru.bias

    @classmethod
    def like(cls, gru: nn.GRU) -> LoopGRU:
        """A LoopGRU of ``gru``'s sizes, on ``gru``'s device (the meta device for a template)."""
        return cls(gru.input_size, gru.hidden_size, device=gru.weight_ih_l0.device)

    def forward(self, x: torch.Tensor, h0: torch.Tensor | None = None):
        N, T, _ = x.shape
        h = x.new_zeros(N, self.hidden_size) if h0 is None else h0[0]
        gi = torch.nn.functional.linear(x, self.weight_ih_l0, self.bias_ih_l0)  # every step at once
        r_i, z_i, n_i = gi.chunk(3, dim=2)
        outputs = []
        for t in range(T):
            gh = torch.nn.functional.linear(h, self.weight_hh_l0, self.bias_hh_l0)
            r_h, z_h, n_h = gh.chunk(3, dim=1)
            r = torch.sigmoid(r_i[:, t] + r_h)
            z = torch.sigmoid(z_i[:, t] + z_h)
            n = torch.tanh(n_i[:, t] + r * n_h)
            h = (1 - z) * n + z * h
            outputs.append(h)
        return torch.stack(outputs, dim=1), h.unsqueeze(0)
