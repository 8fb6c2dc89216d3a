"""LSTMs: one cell for every normalization, unrolled over time by a Python loop.

Every variant runs the same code, :class:`LSTMLayer`; they differ only in the normalization
layers the cell asks :func:`~normbench.norms.make_recurrent_norm` for, and (for weight norm)
in the reparameterization of its two matrices. With gates :math:`(i, f, g, o)`:

.. math::
    \\begin{aligned}
    (i, f, g, o) &= N_h(W_h h_{t-1}; t) + N_x(W_x x_t; t) + b \\\\
    c_t &= \\sigma(f) \\odot c_{t-1} + \\sigma(i) \\odot \\tanh(g) \\\\
    h_t &= \\sigma(o) \\odot \\tanh(N_c(c_t; t))
    \\end{aligned}

- ``norm=none``: every :math:`N` is the identity (the plain LSTM).
- ``norm=batch`` (Cooijmans et al. 2016): :math:`N_h, N_x` are batch norm with per-time-step
  statistics and :math:`\\gamma` only (no :math:`\\beta`: :math:`b` is the shift);
  :math:`N_c` has :math:`\\gamma` and :math:`\\beta`; all :math:`\\gamma` start at
  ``norm.gamma_init`` (0.1). The cell state :math:`c_t` itself is carried unnormalized.
- ``norm=layer`` (Ba et al. 2016): :math:`N_h, N_x, N_c` are layer norm over the features of
  each sample (all 4H gate pre-activations for :math:`N_h` and :math:`N_x`), gain 1, bias 0.
- ``norm=weight`` (Salimans & Kingma 2016): :math:`W_x` and :math:`W_h` (and the output
  layer) are reparameterized as :math:`g\\,v/\\lVert v \\rVert` per output unit.

:math:`W_x x_t` does not depend on the recurrence, so it is computed, and normalized, for all
time steps at once; only the recurrent half runs step by step.
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from normbench.config.rules import check
from normbench.config.schema import rules_for
from normbench.errors import ConfigError
from normbench.norms import SKIP_DATA_INIT, make_recurrent_norm


def _init_blocks(weight: torch.Tensor, scheme: str, hidden_size: int) -> None:
    """Initialize a (4H, fan_in) gate matrix block by block (one H x fan_in block per gate)."""
    if scheme == "default":  # PyTorch's nn.LSTM: U(-1/sqrt(H), 1/sqrt(H))
        bound = hidden_size ** -0.5
        nn.init.uniform_(weight, -bound, bound)
        return
    for block in weight.split(hidden_size, dim=0):
        if scheme == "orthogonal":
            nn.init.orthogonal_(block)
        elif scheme == "identity":
            nn.init.eye_(block)
        else:
            nn.init.xavier_uniform_(block)


class LSTMLayer(nn.Module):
    """One LSTM layer: the shared cell, its normalizations, unrolled over a sequence.

    Args:
        input_size: features per time step.
        hidden_size: H.
        norm: ``none``, ``batch``, ``layer`` or ``weight``; other norms raise ConfigError.
        norm_options: the ``norm`` config group's options.
        max_steps: :math:`T_{max}`, the training sequence length (batch norm keeps population
            statistics for that many steps).
        input_init, recurrent_init: initialization of :math:`W_x` and :math:`W_h`, per gate block.
        forget_bias: initial bias of the forget gate.

    Shape:
        - Input: :math:`(N, T, \\text{input\\_size})`, and optionally the state
          :math:`(h_0, c_0)`, each :math:`(N, H)` (zeros when left out).
        - Output: :math:`(N, T, H)` and the final state :math:`(h_T, c_T)`.
    """

    def __init__(self, input_size: int, hidden_size: int, norm: str, norm_options: dict, max_steps: int,
                 input_init: str = "orthogonal", recurrent_init: str = "orthogonal", forget_bias: float = 1.0):
        super().__init__()
        H = self.hidden_size = hidden_size
        self.x_proj = nn.Linear(input_size, 4 * H, bias=False)
        self.h_proj = nn.Linear(H, 4 * H, bias=False)
        setattr(self.h_proj, SKIP_DATA_INIT, True)
        self.bias = nn.Parameter(torch.zeros(4 * H))
        with torch.no_grad():
            _init_blocks(self.x_proj.weight, input_init, H)
            _init_blocks(self.h_proj.weight, recurrent_init, H)
            self.bias[H:2 * H] = forget_bias  # gate order i, f, g, o (as nn.LSTM)
        self.norm_x = make_recurrent_norm(norm, 4 * H, max_steps, center=False, **norm_options)
        self.norm_h = make_recurrent_norm(norm, 4 * H, max_steps, center=False, **norm_options)
        self.norm_c = make_recurrent_norm(norm, H, max_steps, center=True, **norm_options)

    def forward(self, x: torch.Tensor, state: tuple[torch.Tensor, torch.Tensor] | None = None):
        N, T, _ = x.shape
        H = self.hidden_size
        if state is None:
            zeros = x.new_zeros(N, H)
            state = (zeros, zeros)
        h, c = state
        # The input term for every step at once: one matmul, one normalization call.
        wx = self.x_proj(x.reshape(N * T, -1)).view(N, T, 4 * H)
        wx = self.norm_x(wx, 0) + self.bias
        w_h = self.h_proj.weight  # fetched once: weight norm computes g v/||v|| here, not per step
        norm_h, norm_c = self.norm_h, self.norm_c
        outputs = []
        for t in range(T):
            gates = wx[:, t] + norm_h(F.linear(h, w_h), t)
            i, f, g, o = gates.chunk(4, dim=1)
            c = torch.sigmoid(f) * c + torch.sigmoid(i) * torch.tanh(g)
            h = torch.sigmoid(o) * torch.tanh(norm_c(c, t))
            outputs.append(h)
        return torch.stack(outputs, dim=1), (h, c)


class LSTM(nn.Module):
    """An LSTM classifier for sequences, or a character-level language model for text.

    The data decides the reading: a signal ``(C, L)`` is a sequence of L steps of C features
    (MNIST-1D: 40 steps of one value); an image ``(C, H, W)`` is read pixel by pixel
    (``image_sequence=pixels``: H*W steps of C values, sequential MNIST) or row by row
    (``rows``: H steps of C*W values); text ``(L,)`` of character indices is read one-hot, one
    character per step. A classifier predicts from the last hidden state of the top layer; a
    language model predicts the next character from every hidden state.

    Args:
        input_shape, num_classes: from the dataset (for text, num_classes is the vocabulary).
        norm, norm_options: the ``norm`` config group (see :mod:`normbench.models.recurrent`).
        data_kind: ``signal``, ``image`` or ``text``.
        hidden_size, num_layers: the stack's width and depth.
        image_sequence: ``pixels`` or ``rows``.
        values_per_step: read this many consecutive positions (pixels, rows) per time step, so
            that a signal of length L becomes L / values_per_step steps. With one value per
            step, layer norm of :math:`W_x x_t` keeps only the sign of :math:`x_t` (the
            normalized vector is :math:`\\pm W_x / \\lVert W_x \\rVert` up to centring), so the
            LN-LSTM of Ba et al. needs several values per step to see its input's magnitude.
        input_init: ``orthogonal``, ``xavier`` or ``default`` (PyTorch's nn.LSTM), per gate.
        recurrent_init: ``orthogonal``, ``identity`` (Le et al.; Cooijmans et al. on MNIST),
            ``xavier`` or ``default``, per gate.
        forget_bias: initial forget-gate bias.
        h0_noise: standard deviation of Gaussian noise on the initial hidden state in training
            (Cooijmans et al.: sequential MNIST starts with constant pixels, whose batch variance
            is zero); 0 for none.
        impl: ``cell`` (our cell, every norm) or ``torch`` (PyTorch's fused ``nn.LSTM``, a speed
            reference for ``norm=none`` only).
    """

    data_kind_aware = True  # build_model passes data_kind

    def __init__(self, input_shape, num_classes, norm, norm_options, data_kind="signal", hidden_size=128,
                 num_layers=1, image_sequence="pixels", input_init="orthogonal", recurrent_init="orthogonal",
                 forget_bias=1.0, h0_noise=0.0, impl="cell", values_per_step=1):
        super().__init__()
        check("model", {"image_sequence": image_sequence, "input_init": input_init, "recurrent_init": recurrent_init,
                        "impl": impl, "hidden_size": hidden_size, "num_layers": num_layers,
                        "values_per_step": values_per_step, "h0_noise": h0_noise}, rules_for("model", "lstm"))
        if impl == "torch" and norm != "none":
            raise ConfigError(f"model.impl=torch is PyTorch's fused nn.LSTM, which has no place for norm={norm}; "
                              "use model.impl=cell (or norm=none)")
        self.data_kind, self.image_sequence = data_kind, image_sequence
        self.hidden_size, self.h0_noise, self.num_classes = hidden_size, float(h0_noise), num_classes
        self.language_model = data_kind == "text"
        self.values_per_step = values_per_step
        steps, features = self.sequence_shape(tuple(input_shape))
        if values_per_step > 1:
            if self.language_model or steps % values_per_step:
                raise ConfigError(
                    f"model.values_per_step={values_per_step} must divide the {steps} steps of a "
                    f"{data_kind} sample (text reads one character per step); use a divisor of {steps}"
                    if not self.language_model else
                    f"model.values_per_step={values_per_step} is for signals and images; text reads one "
                    "character per step, use model.values_per_step=1")
            steps, features = steps // values_per_step, features * values_per_step
        self.max_steps = steps
        if impl == "torch":
            self.fused = nn.LSTM(features, hidden_size, num_layers, batch_first=True)
            self.layers = nn.ModuleList()
        else:
            self.fused = None
            self.layers = nn.ModuleList(
                LSTMLayer(features if k == 0 else hidden_size, hidden_size, norm, norm_options, steps,
                          input_init, recurrent_init, forget_bias)
                for k in range(num_layers)
            )
        self.head = nn.Linear(hidden_size, num_classes)

    def sequence_shape(self, input_shape: tuple[int, ...]) -> tuple[int, int]:
        """(time steps, features per step) of one sample of ``input_shape``."""
        if self.data_kind == "text":
            return input_shape[0], self.num_classes
        if self.data_kind == "signal" and len(input_shape) == 2:
            return input_shape[1], input_shape[0]
        if self.data_kind == "image" and len(input_shape) == 3:
            C, H, W = input_shape
            return (H * W, C) if self.image_sequence == "pixels" else (H, C * W)
        raise ConfigError(f"model=lstm cannot read {self.data_kind} data of shape {input_shape}; "
                          "it takes signals (C, L), images (C, H, W) or text")

    def as_sequence(self, x: torch.Tensor) -> torch.Tensor:
        """A batch of samples as float sequences :math:`(N, T, \\text{features})`."""
        if self.data_kind == "text":
            return F.one_hot(x, self.num_classes).to(torch.get_default_dtype())
        if self.data_kind == "signal":
            seq = x.transpose(1, 2)
        elif self.image_sequence == "pixels":
            N, C, H, W = x.shape
            seq = x.reshape(N, C, H * W).transpose(1, 2)
        else:
            N, C, H, W = x.shape
            seq = x.permute(0, 2, 1, 3).reshape(N, H, C * W)
        if self.values_per_step > 1:
            N, T, F_ = seq.shape
            seq = seq.reshape(N, T // self.values_per_step, self.values_per_step * F_)
        return seq

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        seq = self.as_sequence(x)
        N, T, _ = seq.shape
        if self.fused is not None:
            h0 = None
            if self.training and self.h0_noise > 0:
                layers = self.fused.num_layers
                h0 = (torch.randn(layers, N, self.hidden_size, device=seq.device) * self.h0_noise,
                      seq.new_zeros(layers, N, self.hidden_size))
            out, _ = self.fused(seq, h0)
        else:
            out = seq
            for layer in self.layers:
                state = None
                if self.training and self.h0_noise > 0:
                    state = (torch.randn(N, self.hidden_size, device=seq.device) * self.h0_noise,
                             seq.new_zeros(N, self.hidden_size))
                out, _ = layer(out, state)
        if self.language_model:
            return self.head(out.reshape(N * T, -1)).view(N, T, -1)
        return self.head(out[:, -1])
