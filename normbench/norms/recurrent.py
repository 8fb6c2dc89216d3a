"""Normalization inside a recurrent cell: layers called as ``norm(x, t)``.

Recurrent batch norm keeps statistics per time step (Cooijmans et al. 2016); a norm without
time dependence (layer norm, RMSNorm, the identity) is applied alike at every step.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class RecurrentBatchNorm(nn.Module):
    r"""Batch normalization with statistics per time step (Cooijmans et al., 2016).

    .. math::
        y_t = \frac{x_t - \mathrm{E}[x_t]}{\sqrt{\mathrm{Var}[x_t] + \epsilon}} \cdot \gamma + \beta

    In training the mean and (biased) variance of step :math:`t` are taken per feature over the
    batch only, never over time: each time step has its own statistics, and its own running
    (population) mean and unbiased variance, updated with ``momentum`` as in
    :class:`torch.nn.BatchNorm1d`. :math:`\gamma` and :math:`\beta` have one entry per feature and
    are shared by all time steps. :math:`\gamma` starts at ``gamma_init`` (0.1, the paper's value:
    a small gain keeps the gates out of the saturated range of the sigmoid and tanh);
    ``center=False`` drops :math:`\beta`, as the paper does for the normalized input and
    recurrent terms of an LSTM, whose gates have a bias of their own.

    The layer holds population statistics for ``max_steps`` time steps, the longest training
    length :math:`T_{max}`; training on a later step is an error. In eval the population
    statistics of step :math:`t` are used for :math:`t < T_{max}`, and those of the last step
    seen in training for every later step (the paper's rule for test sequences longer than the
    training ones). Averaging statistics over time instead "severely degrades performance".

    Args:
        num_features: C, the number of features.
        max_steps: :math:`T_{max}`, the number of time steps that get their own statistics.
        eps: added to the variance.
        momentum: weight of the newest batch in the running statistics.
        affine: learn :math:`\gamma` (and :math:`\beta` when ``center``).
        center: learn :math:`\beta`.
        gamma_init: the initial :math:`\gamma`.

    Shape:
        - Input: :math:`(N, C)`, one time step (``t`` is its index), or :math:`(N, T, C)`, the
          steps ``t`` to ``t + T - 1`` at once (one fused call for a term that does not depend on
          the recurrence, such as :math:`W_x x_t`).
        - Output: same shape as the input.
    Examples::

        >>> norm = RecurrentBatchNorm(4, max_steps=3)
        >>> x = torch.randn(8, 3, 4)  # (N, T, C): three steps at once
        >>> y = norm(x)
        >>> bool(y.mean(dim=0).abs().max() < 1e-5)  # statistics per step, over the batch only
        True
        >>> round(float(norm.weight.detach()[0]), 2)  # Cooijmans et al.'s initial gain
        0.1
        >>> norm(torch.randn(8, 4), t=2).shape  # one step
        torch.Size([8, 4])
    """

    def __init__(self, num_features: int, max_steps: int, eps: float = 1e-5, momentum: float = 0.1,
                 affine: bool = True, center: bool = True, gamma_init: float = 0.1):
        super().__init__()
        if max_steps < 1:
            raise ValueError(f"max_steps={max_steps} must be at least 1")
        self.num_features, self.max_steps = num_features, max_steps
        self.eps, self.momentum = eps, momentum
        self.weight = nn.Parameter(torch.full((num_features,), float(gamma_init))) if affine else None
        self.bias = nn.Parameter(torch.zeros(num_features)) if affine and center else None
        self.register_buffer("running_mean", torch.zeros(max_steps, num_features))
        self.register_buffer("running_var", torch.ones(max_steps, num_features))
        # T_max: the number of leading steps that have population statistics (kept on the device,
        # so that neither training nor evaluation needs a host-device synchronisation).
        self.register_buffer("steps_tracked", torch.zeros((), dtype=torch.long))

    def forward(self, x: torch.Tensor, t: int = 0) -> torch.Tensor:
        steps = 1 if x.dim() == 2 else x.shape[1]
        flat = x if x.dim() == 2 else x.reshape(x.shape[0], steps * self.num_features)
        if self.training:
            if t + steps > self.max_steps:
                raise ValueError(
                    f"RecurrentBatchNorm holds statistics for {self.max_steps} time steps and got step "
                    f"{t + steps - 1} in training; build it with max_steps >= the training length"
                )
            with torch.no_grad():  # the running statistics of steps t .. t+steps-1, updated in place
                # (by hand, not by batch_norm: under torch.func.vmap batch_norm loses its update of
                # a buffer that is a slice of the stacked members' buffer)
                var_u, mean_b = torch.var_mean(flat.detach(), dim=0, correction=1)
                self.running_mean[t:t + steps].mul_(1 - self.momentum).add_(
                    mean_b.view(steps, -1), alpha=self.momentum)
                self.running_var[t:t + steps].mul_(1 - self.momentum).add_(var_u.view(steps, -1), alpha=self.momentum)
                self.steps_tracked.copy_(torch.maximum(self.steps_tracked, torch.full_like(self.steps_tracked, t + steps)))
            mean = var = None
            training = True
        else:
            last = (self.steps_tracked - 1).clamp(min=0)
            index = torch.arange(t, t + steps, device=x.device).clamp(max=last)
            mean = self.running_mean.index_select(0, index).view(-1)
            var = self.running_var.index_select(0, index).view(-1)
            training = False
        if x.dim() == 2:
            return F.batch_norm(x, mean, var, self.weight, self.bias, training, self.momentum, self.eps)
        y = F.batch_norm(flat, mean, var, None, None, training, self.momentum, self.eps).view_as(x)
        if self.weight is not None:
            y = y * self.weight
        if self.bias is not None:
            y = y + self.bias
        return y

    def extra_repr(self) -> str:
        return (f"{self.num_features}, max_steps={self.max_steps}, eps={self.eps}, momentum={self.momentum}, "
                f"affine={self.weight is not None}, center={self.bias is not None}")


class StepNorm(nn.Module):
    r"""A normalization without time dependence, applied alike at every time step.

    Wraps a layer built by :func:`make_norm` for ``(N, C)`` features (layer norm: Ba et al.
    apply it "unchanged at every time step"; ``none``: the identity) so that it takes the
    recurrent calling convention ``norm(x, t)`` and inputs of shape :math:`(N, C)` or
    :math:`(N, T, C)`, with statistics over the C features of each sample and step.
    Examples::

        >>> norm = StepNorm(torch.nn.LayerNorm(4))
        >>> x = torch.randn(8, 5, 4)
        >>> torch.equal(norm(x, t=0), torch.nn.functional.layer_norm(x, (4,)).view_as(x))
        True
    """

    def __init__(self, layer: nn.Module):
        super().__init__()
        self.layer = layer
        self.is_identity = isinstance(layer, nn.Identity)

    def forward(self, x: torch.Tensor, t: int = 0) -> torch.Tensor:
        if self.is_identity:
            return x
        if x.dim() == 2:
            return self.layer(x)
        return self.layer(x.reshape(-1, x.shape[-1])).view_as(x)


# The norms that have a meaning inside a recurrent cell, and the options each takes there.
