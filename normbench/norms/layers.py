"""Feed-forward normalization layers that PyTorch lacks, or has only in another form.

Where PyTorch has a fused op for the maths (``F.batch_norm``, ``F.group_norm``, ``F.layer_norm``,
``F.rms_norm``) the layers use it. Shapes follow PyTorch: :math:`(N, C)` or :math:`(N, C, *)`,
channels first.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn


class MeanOnlyBatchNorm(nn.Module):
    r"""Mean-only batch normalization (Salimans & Kingma, 2016, section 2.2).

    .. math::
        y = x - \mu + \beta

    In training :math:`\mu` is the mean of each channel over the batch and every spatial
    position, i.e. over all dims but dim 1; a running mean is kept with ``momentum`` as in
    :class:`torch.nn.BatchNorm1d`. In eval the running mean replaces the batch mean, so the
    output depends on the input alone. The variance is never divided out: the paper pairs this
    layer with weight normalization, which already controls the scale.

    Args:
        num_features: C, the number of channels.
        momentum: weight of the newest batch mean in the running mean.

    Shape:
        - Input: :math:`(N, C)` or :math:`(N, C, *)`
        - Output: same shape as the input.
    Examples::

        >>> norm = MeanOnlyBatchNorm(4)
        >>> x = 3 + torch.randn(8, 4, 5)
        >>> y = norm(x)  # training: each channel's batch mean is removed, its scale kept
        >>> bool(y.mean(dim=(0, 2)).abs().max() < 1e-5), torch.allclose(y.std(dim=(0, 2)), x.std(dim=(0, 2)))
        (True, True)
        >>> _ = norm.eval()
        >>> torch.equal(norm(x), x - norm.running_mean.view(1, -1, 1))
        True
    """

    def __init__(self, num_features: int, momentum: float = 0.1):
        super().__init__()
        self.num_features = num_features
        self.momentum = momentum
        self.bias = nn.Parameter(torch.zeros(num_features))
        self.register_buffer("running_mean", torch.zeros(num_features))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        shape = (1, -1) + (1,) * (x.dim() - 2)
        if self.training:
            reduce_dims = [d for d in range(x.dim()) if d != 1]
            mean = x.mean(dim=reduce_dims)
            with torch.no_grad():
                self.running_mean.lerp_(mean, self.momentum)
        else:
            mean = self.running_mean
        return x - mean.view(shape) + self.bias.view(shape)

    def extra_repr(self) -> str:
        return f"{self.num_features}, momentum={self.momentum}"


class LayerNorm(nn.Module):
    r"""Layer normalization (Ba, Kiros & Hinton, 2016) with one gain and bias per channel.

    .. math::
        y = \frac{x - \mathrm{E}[x]}{\sqrt{\mathrm{Var}[x] + \epsilon}} \cdot \gamma + \beta

    The mean and (biased) variance are taken per sample over every non-batch dim: over the
    C features of an ``(N, C)`` input, over C and all positions of ``(N, C, *)`` features, which
    is group norm with one group, as the GN paper defines LN for convolutional features.
    :math:`\gamma, \beta` have C entries. Train and eval behave the same.

    Shape:
        - Input: :math:`(N, C)` or :math:`(N, C, *)`
        - Output: same shape as the input.
    Examples::

        >>> norm = LayerNorm(4)
        >>> x = 3 + 2 * torch.randn(2, 4, 5, 5)
        >>> y = norm(x)  # each sample over its channels and positions
        >>> bool(y.mean(dim=(1, 2, 3)).abs().max() < 1e-5)
        True
        >>> torch.allclose(y, torch.nn.functional.group_norm(x, 1), atol=1e-6)
        True
    """

    def __init__(self, num_features: int, eps: float = 1e-5, affine: bool = True):
        super().__init__()
        self.num_features = num_features
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(num_features)) if affine else None
        self.bias = nn.Parameter(torch.zeros(num_features)) if affine else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if x.dim() == 2:
            return F.layer_norm(x, (self.num_features,), self.weight, self.bias, self.eps)
        return F.group_norm(x, 1, self.weight, self.bias, self.eps)

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, affine={self.weight is not None}"


class RMSNorm(nn.Module):
    r"""Root mean square layer normalization (Zhang & Sennrich, 2019), channels first.

    .. math::
        y = \frac{x}{\sqrt{\mathrm{E}[x^2] + \epsilon}} \cdot g

    The mean square is taken per sample over every non-batch dim, as :class:`LayerNorm` takes
    its statistics: over the C features of an ``(N, C)`` input, over C and all positions of
    ``(N, C, *)`` features. Unlike layer norm nothing is re-centred and there is no bias, so a
    layer before it keeps its own (``centers`` is False). :math:`g` has C entries. Train and
    eval behave the same.

    Args:
        num_features: C, the number of channels.
        eps: added to the mean square.
        affine: learn the gain :math:`g` (starts at 1).

    Shape:
        - Input: :math:`(N, C)` or :math:`(N, C, *)`
        - Output: same shape as the input.
    Examples::

        >>> norm = RMSNorm(4)
        >>> x = torch.randn(3, 4)
        >>> y = norm(x)  # each sample scaled to a unit root mean square, its mean kept
        >>> torch.allclose(y.pow(2).mean(dim=1), torch.ones(3), atol=1e-4)
        True
    """

    centers = False

    def __init__(self, num_features: int, eps: float = 1e-5, affine: bool = True):
        super().__init__()
        self.num_features = num_features
        self.eps = eps
        self.weight = nn.Parameter(torch.ones(num_features)) if affine else None

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        y = F.rms_norm(x, x.shape[1:], eps=self.eps)
        if self.weight is not None:
            y = y * self.weight.view((1, -1) + (1,) * (x.dim() - 2))
        return y

    def extra_repr(self) -> str:
        return f"{self.num_features}, eps={self.eps}, affine={self.weight is not None}"


class GhostBatchNorm(nn.modules.batchnorm._BatchNorm):
    r"""Ghost batch normalization (Hoffer, Hubara & Soudry, 2017).

    .. math::
        y = \frac{x - \mathrm{E}_g[x]}{\sqrt{\mathrm{Var}_g[x] + \epsilon}} \cdot \gamma + \beta

    In training the batch is cut into consecutive virtual ("ghost") batches of
    ``virtual_batch_size`` samples, and each sample is normalized with the mean and (biased)
    variance of its own ghost batch, per channel over its samples and positions: the statistics'
    batch is decoupled from the SGD batch. A batch no larger than ``virtual_batch_size`` is one
    ghost batch (plain batch norm). The running statistics move once per step, toward the mean
    over ghost batches of their means and unbiased variances, with ``momentum`` (one update,
    not one per ghost batch, so the average forgets at the rate batch norm's does). In eval the
    running (population) statistics are used, as in batch norm.

    Args:
        num_features: C, the number of channels.
        virtual_batch_size: samples per ghost batch; the batch size must be a multiple of it.
        eps, momentum, affine: as in :class:`torch.nn.BatchNorm1d`.

    Shape:
        - Input: :math:`(N, C)` or :math:`(N, C, *)`, :math:`N` a multiple of
          ``virtual_batch_size`` (or at most it) in training.
        - Output: same shape as the input.
    Examples::

        >>> norm = GhostBatchNorm(4, virtual_batch_size=2)
        >>> x = torch.randn(6, 4)
        >>> y = norm(x)  # three ghost batches of two, each normalized on its own
        >>> bool(y.view(3, 2, 4).mean(dim=1).abs().max() < 1e-5)
        True
        >>> int(norm.num_batches_tracked)  # one running-statistics update per step
        1
    """

    def __init__(self, num_features: int, virtual_batch_size: int = 32, eps: float = 1e-5, momentum: float = 0.1,
                 affine: bool = True):
        super().__init__(num_features, eps=eps, momentum=momentum, affine=affine, track_running_stats=True)
        self.virtual_batch_size = virtual_batch_size

    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.dim() < 2:
            raise ValueError(f"expected an input of shape (N, C, *), got {tuple(x.shape)}")

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        n, v = x.shape[0], self.virtual_batch_size
        if not self.training or n <= v:
            return super().forward(x)
        if n % v:
            raise ValueError(f"GhostBatchNorm: the batch of {n} is not a multiple of virtual_batch_size={v}")
        ghosts = x.reshape(n // v, v, *x.shape[1:])  # (G, V, C, *)
        dims = [1, *range(3, ghosts.dim())]
        var, mean = torch.var_mean(ghosts, dim=dims, keepdim=True, correction=0)
        y = ((ghosts - mean) * torch.rsqrt(var + self.eps)).reshape_as(x)
        with torch.no_grad():
            count = ghosts.numel() // (ghosts.shape[0] * self.num_features)
            unbiased = var * (count / max(count - 1, 1))
            self.running_mean.lerp_(mean.mean(0).flatten(), self.momentum)
            self.running_var.lerp_(unbiased.mean(0).flatten(), self.momentum)
            self.num_batches_tracked.add_(1)
        if self.affine:
            shape = (1, -1) + (1,) * (x.dim() - 2)
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y

    def extra_repr(self) -> str:
        return f"{super().extra_repr()}, virtual_batch_size={self.virtual_batch_size}"


class BatchRenorm(nn.modules.batchnorm._BatchNorm):
    r"""Batch renormalization (Ioffe, 2017).

    .. math::
        y = \left(\frac{x - \mu_B}{\sigma_B} \cdot r + d\right) \cdot \gamma + \beta, \quad
        r = \mathrm{clip}_{[1/r_{max},\, r_{max}]}\!\left(\frac{\sigma_B}{\sigma}\right), \quad
        d = \mathrm{clip}_{[-d_{max},\, d_{max}]}\!\left(\frac{\mu_B - \mu}{\sigma}\right)

    In training :math:`\mu_B, \sigma_B = \sqrt{\mathrm{Var}_B + \epsilon}` are the batch's, per
    channel over the samples and positions; :math:`\mu, \sigma = \sqrt{\mathrm{Var} + \epsilon}`
    come from the running statistics *before* this batch updates them; no gradient flows through
    :math:`r` and :math:`d`. With :math:`r = 1, d = 0` this is batch norm; unclipped it is the
    inference transform, so training and inference agree as the batch grows small.
    In eval the running statistics are used, as in batch norm; they are batch norm's (mean and
    unbiased variance, updated with ``momentum``), so ``norm.population=exact`` applies as to
    batch norm (the paper averages :math:`\sigma` rather than :math:`\sigma^2`, a second-order
    difference).

    The clipping starts as batch norm and is relaxed on the paper's schedule, driven by the
    layer's own count of training batches (``num_batches_tracked``, saved in its state, so a
    resumed run continues the schedule exactly): :math:`r_{max} = 1, d_{max} = 0` for the first
    ``relax_from`` batches, then linearly to ``r_max`` at batch ``r_max_at`` and ``d_max`` at
    ``d_max_at`` (Ioffe: 5000, 40000 and 25000, to 3 and 5).

    Args:
        num_features: C, the number of channels.
        r_max, d_max: the final clipping bounds (at least 1 and 0).
        relax_from, r_max_at, d_max_at: the schedule, in training batches.
        eps, momentum, affine: as in :class:`torch.nn.BatchNorm1d`.

    Shape:
        - Input: :math:`(N, C)` or :math:`(N, C, *)`
        - Output: same shape as the input.
    Examples::

        >>> norm = BatchRenorm(4, relax_from=0, r_max_at=1, d_max_at=1)
        >>> x = torch.randn(16, 4, 3)
        >>> y = norm(x)  # r and d are 1 and 0 while the running statistics are the initial 0 and 1
        >>> y.shape
        torch.Size([16, 4, 3])
        >>> [round(float(b), 1) for b in norm.bounds()]  # the schedule has reached r_max, d_max
        [3.0, 5.0]
    """

    def __init__(self, num_features: int, r_max: float = 3.0, d_max: float = 5.0, relax_from: int = 5000,
                 r_max_at: int = 40000, d_max_at: int = 25000, eps: float = 1e-5, momentum: float = 0.1,
                 affine: bool = True):
        super().__init__(num_features, eps=eps, momentum=momentum, affine=affine, track_running_stats=True)
        self.r_max, self.d_max = float(r_max), float(d_max)
        self.relax_from, self.r_max_at, self.d_max_at = int(relax_from), int(r_max_at), int(d_max_at)

    def _check_input_dim(self, x: torch.Tensor) -> None:
        if x.dim() < 2:
            raise ValueError(f"expected an input of shape (N, C, *), got {tuple(x.shape)}")

    def bounds(self) -> tuple[torch.Tensor, torch.Tensor]:
        """The current :math:`r_{max}, d_{max}` as tensors (no host sync: the count is on the device)."""
        done = self.num_batches_tracked.float() - self.relax_from

        def ramp(end_step: int) -> torch.Tensor:  # 0 until relax_from, 1 from end_step on
            span = end_step - self.relax_from
            return (done >= 0).float() if span <= 0 else (done / span).clamp(0.0, 1.0)

        return 1.0 + (self.r_max - 1.0) * ramp(self.r_max_at), self.d_max * ramp(self.d_max_at)

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            return super().forward(x)
        shape = (1, -1) + (1,) * (x.dim() - 2)
        dims = [d for d in range(x.dim()) if d != 1]
        var, mean = torch.var_mean(x, dim=dims, correction=0)
        std = torch.sqrt(var + self.eps)
        with torch.no_grad():
            r_max, d_max = self.bounds()
            running_std = torch.sqrt(self.running_var + self.eps)
            r = torch.minimum(torch.maximum(std / running_std, 1.0 / r_max), r_max)
            d = torch.minimum(torch.maximum((mean - self.running_mean) / running_std, -d_max), d_max)
            count = x.numel() // self.num_features
            self.running_mean.lerp_(mean, self.momentum)
            self.running_var.lerp_(var * (count / max(count - 1, 1)), self.momentum)
            self.num_batches_tracked.add_(1)
        y = (x - mean.view(shape)) / std.view(shape) * r.view(shape) + d.view(shape)
        if self.affine:
            y = y * self.weight.view(shape) + self.bias.view(shape)
        return y

    def extra_repr(self) -> str:
        return (f"{super().extra_repr()}, r_max={self.r_max}, d_max={self.d_max}, relax_from={self.relax_from}, "
                f"r_max_at={self.r_max_at}, d_max_at={self.d_max_at}")
