"""FiLM (Perez et al. 2018): a question modulates the normalized maps of a visual network.

The conditional batch norm of Perez et al. (2017, "Learning visual reasoning without strong
priors") is the special case ``norm=batch``: batch norm without its own affine parameters,
followed by a per-channel scale and shift that the question predicts. Any other norm gives
its conditional counterpart (``group``, ``layer``, ``instance``; ``none``: FiLM on the raw
conv output; ``weight``: weight-normalized convs and linears, FiLM on their output).
"""

from __future__ import annotations

import torch
import torch.nn.functional as F
from torch import nn

from normbench.config.rules import check
from normbench.config.schema import FILM_SIZES, rules_for
from normbench.errors import ConfigError
from normbench.norms import SKIP_DATA_INIT, get_norm, make_norm

PRESETS = {
    # Trains in minutes on 2 CPU cores at 64x64 (the default).
    "small": {"blocks": 4, "maps": 32, "embedding_dim": 64, "gru_size": 128, "stem_layers": 3,
              "classifier_channels": 64, "classifier_hidden": 128, "init": "default"},
    # Perez et al. (2018): 4 blocks of 128 maps, GRU 4096, embeddings 200, classifier 512 + MLP 1024,
    # raw-pixel stem of 4 stride-2 layers (224x224 -> 14x14); with ResNet features, one 3x3 conv;
    # Kaiming-uniform weights, as the authors' init_modules.
    "paper": {"blocks": 4, "maps": 128, "embedding_dim": 200, "gru_size": 4096, "stem_layers": 4,
              "classifier_channels": 512, "classifier_hidden": 1024, "init": "kaiming_uniform"},
}


def coordinate_maps(n: int, height: int, width: int, device, dtype) -> torch.Tensor:
    """Two maps ``(n, 2, H, W)`` holding each position's x and y, from -1 to 1."""
    ys = torch.linspace(-1, 1, height, device=device, dtype=dtype)
    xs = torch.linspace(-1, 1, width, device=device, dtype=dtype)
    grid = torch.stack([xs.view(1, -1).expand(height, width), ys.view(-1, 1).expand(height, width)])
    return grid.unsqueeze(0).expand(n, 2, height, width)


class ConditionalNorm(nn.Module):
    r"""A normalization without its own affine, followed by feature-wise linear modulation.

    .. math::
        y = \gamma(q) \odot \frac{x - \mathrm{E}[x]}{\sqrt{\mathrm{Var}[x] + \epsilon}} + \beta(q)

    :math:`\gamma(q)` and :math:`\beta(q)` are given per sample and channel by the conditioning
    input (FiLM's question encoder); the layer itself learns no :math:`\gamma, \beta`. The
    statistics are those of ``make_norm(kind, C, dims=2, affine=False)``: ``batch`` (Perez et
    al.'s conditional batch norm) takes them per channel over the batch and all positions in
    training and uses the running (population) statistics in eval; ``group``, ``layer`` and
    ``instance`` take them per sample (train and eval alike); ``none`` and ``weight`` leave
    :math:`x` as it is (FiLM only).

    Args:
        kind: the norm (see :func:`~normbench.norms.make_norm`).
        num_features: C.
        **options: the norm's options; ``affine`` is forced to ``False`` and ``gamma_init`` is
            ignored (:math:`\gamma` comes from the question).

    Shape:
        - Input: ``x`` :math:`(N, C, H, W)`; ``gamma``, ``beta`` :math:`(N, C)`.
        - Output: :math:`(N, C, H, W)`.
    """

    def __init__(self, kind: str, num_features: int, **options):
        super().__init__()
        if "affine" in options:
            options["affine"] = False
        options.pop("gamma_init", None)
        self.norm = make_norm(kind, num_features, 2, **options)

    def forward(self, x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
        return film(self.norm(x), gamma, beta)


def film(x: torch.Tensor, gamma: torch.Tensor, beta: torch.Tensor) -> torch.Tensor:
    r"""FiLM: :math:`y_{n,c,h,w} = \gamma_{n,c}\, x_{n,c,h,w} + \beta_{n,c}`."""
    return torch.addcmul(beta[:, :, None, None], gamma[:, :, None, None], x)


class FiLMBlock(nn.Module):
    r"""FiLM's residual block (Perez et al. 2018, Figure 3; the authors' ``FiLMedResBlock``).

    .. math::
        r = \mathrm{ReLU}(W_1 [x; c]), \qquad
        y = r + \mathrm{ReLU}\big(\gamma \odot \mathrm{norm}(W_3 r) + \beta\big)

    :math:`W_1` is a 1x1 conv, :math:`W_3` a 3x3 conv, :math:`c` the two coordinate maps,
    concatenated to the input of the 1x1 conv only (the authors' ``use_coords 1``), and ``norm``
    has no affine of its own (:class:`ConditionalNorm`). With ``film=False`` (the ablations
    without FiLM) the norm keeps its own learned affine instead and ``gamma``, ``beta`` are
    ignored.

    Shape:
        - Input: ``x`` :math:`(N, C, H, W)`, ``coords`` :math:`(N, 2, H, W)`, ``gamma`` and
          ``beta`` :math:`(N, C)`.
        - Output: :math:`(N, C, H, W)`.
    """

    def __init__(self, maps: int, norm: str, norm_options: dict, film: bool = True):
        super().__init__()
        self.conv1 = nn.Conv2d(maps + 2, maps, 1)
        self.conv2 = nn.Conv2d(maps, maps, 3, padding=1)
        self.film = film
        if film:
            self.norm = ConditionalNorm(norm, maps, **norm_options)
        else:
            self.norm = make_norm(norm, maps, 2, **norm_options)

    def forward(self, x, coords, gamma=None, beta=None):
        r = F.relu(self.conv1(torch.cat([x, coords], 1)))
        h = self.conv2(r)
        h = self.norm(h, gamma, beta) if self.film else self.norm(h)
        return r + F.relu(h)


class FiLMNet(nn.Module):
    r"""FiLM for visual question answering (Perez et al. 2018), sized by ``preset``.

    - Question: word embeddings (``embedding_dim``) read by a GRU (``gru_size``); its state
      after the last token of each question (``<end>``: see :mod:`normbench.data.clevr`) is the
      question code :math:`q`.
    - FiLM generator: one linear layer :math:`q \mapsto (\Delta\gamma_b, \beta_b)` for every
      block :math:`b`; :math:`\gamma_b = 1 + \Delta\gamma_b` (the authors' ``gamma_baseline 1``).
      ``film``: ``full``; ``gamma_only`` (:math:`\beta := 0`); ``beta_only`` (:math:`\gamma :=
      1`); two ablations without FiLM, in which the blocks' norms keep their own affine:
      ``image_only``, the paper's "without FiLM" (the question is used nowhere: the model sees
      only the image), and ``late_fusion``, :math:`q` concatenated to the pooled features before
      the classifier's MLP (a CNN+GRU baseline, like the paper's CNN+LSTM row).
    - Visual stem: from raw pixels (uint8, scaled to [-1, 1]), ``stem_layers`` convs of 4x4,
      stride 2, each followed by the norm (with its affine) and ReLU; from precomputed features
      (``dataset.features=resnet101``), coordinate maps and one 3x3 conv, norm, ReLU, as the
      authors' stride-1 stem. Both give ``maps`` channels.
    - ``blocks`` :class:`FiLMBlock`\ s of ``maps`` channels.
    - Classifier: coordinate maps, 1x1 conv to ``classifier_channels``, norm, ReLU, global max
      pooling, then Linear -> norm -> ReLU -> Linear (``classifier_hidden`` units; the authors'
      ``classifier_batchnorm``; a norm over positions, ``instance``, has none to take there).
    - ``init``: ``default`` (PyTorch's) or ``kaiming_uniform`` (the authors' ``init_modules``: the
      weights of every conv and linear layer, the FiLM generator's included, so its
      :math:`\gamma` start far from 1).

    The norm inside the blocks is ``norm`` without affine (``batch``: conditional batch norm;
    batch statistics in training, population statistics in eval). ``preset=small`` (default: 32
    maps, GRU 128, embeddings 64, classifier 64 + MLP 128, a 3-layer stem: 64x64 -> 8x8, PyTorch's
    init) trains in minutes on a CPU; ``preset=paper`` is the paper's size (128 maps, GRU 4096,
    embeddings 200, classifier 512 + MLP 1024, 4-layer stem, Kaiming-uniform init). The paper's
    14x14 maps need ``dataset.image_size=224`` (raw pixels) or ResNet features of 224x224 images;
    at the default 64 pixels the paper's stem gives 4x4. A size given explicitly
    (``model.maps=96``) overrides the preset's. Remaining differences from the authors' code:
    the GRU reads the padded question and its state is gathered at each question's end (theirs
    stops at the ``<END>`` token alike), and dropout (0 in their runs) is absent.

    Input: :class:`~normbench.data.base.Inputs` with ``image`` (N,) rows of the shared table
    ``images`` ((M, 3, H, W) uint8 or (M, 1024, h, w) features), ``question`` (N, L) int64
    word indices (0 = padding) and ``length`` (N,); or the three tensors
    ``forward(images, question, length)`` with ``images`` (N, C, H, W). Output: logits
    (N, answers).
    """

    data_info_aware = True  # build_model passes data.info (vocabulary, image kind)

    def __init__(self, input_shape, num_classes, norm, norm_options, data_info=None, preset="small", film="full",
                 init=None, **given):
        super().__init__()
        unknown = set(given) - set(FILM_SIZES)
        if unknown:
            raise ConfigError(f"model=film takes no option {', '.join(sorted(unknown))}; its sizes: {', '.join(FILM_SIZES)}")
        given = {k: v for k, v in {**given, "init": init}.items() if v is not None}
        check("model", {"film": film, "preset": preset, **given}, rules_for("model", "film"))  # from Python too
        self.sizes = sizes = {**PRESETS[preset], **given}
        info = data_info or {}
        if "vocab_size" not in info:
            raise ConfigError("model=film reads images and questions; use dataset=clevr_like, sort_of_clevr or clevr")
        self.mode = film
        self.image_kind = info.get("image_kind", "pixels")
        maps = sizes["maps"]
        self.stem = self._stem(info.get("image_shape", (3,))[0], maps, sizes["stem_layers"], norm, norm_options)
        use_film = film not in ("image_only", "late_fusion")
        self.embedding = self.gru = self.film_generator = None
        if film != "image_only":
            self.embedding = nn.Embedding(info["vocab_size"], sizes["embedding_dim"], padding_idx=0)
            self.gru = nn.GRU(sizes["embedding_dim"], sizes["gru_size"], batch_first=True)
        self.blocks = nn.ModuleList(FiLMBlock(maps, norm, norm_options, film=use_film)
                                    for _ in range(sizes["blocks"]))
        if use_film:
            self.film_generator = nn.Linear(sizes["gru_size"], sizes["blocks"] * 2 * maps)
            # Weight norm's data-dependent init would scale the predicted gammas to unit variance.
            setattr(self.film_generator, SKIP_DATA_INIT, True)
        self.classifier_conv = nn.Conv2d(maps + 2, sizes["classifier_channels"], 1)
        self.classifier_norm = make_norm(norm, sizes["classifier_channels"], 2, **norm_options)
        hidden = sizes["classifier_hidden"]
        mlp_in = sizes["classifier_channels"] + (sizes["gru_size"] if film == "late_fusion" else 0)
        hidden_norm = nn.Identity() if get_norm(norm).needs_positions else make_norm(norm, hidden, 0, **norm_options)
        self.mlp = nn.Sequential(nn.Linear(mlp_in, hidden), hidden_norm, nn.ReLU(), nn.Linear(hidden, num_classes))
        if sizes["init"] == "kaiming_uniform":
            for m in self.modules():
                if isinstance(m, (nn.Conv2d, nn.Linear)):
                    nn.init.kaiming_uniform_(m.weight)

    def _stem(self, in_channels: int, maps: int, layers: int, norm: str, norm_options: dict) -> nn.Sequential:
        if self.image_kind == "features":  # stride 1: the authors give it coordinate maps
            return nn.Sequential(nn.Conv2d(in_channels + 2, maps, 3, padding=1),
                                 make_norm(norm, maps, 2, **norm_options), nn.ReLU())
        stem: list[nn.Module] = []
        for i in range(layers):
            stem += [nn.Conv2d(in_channels if i == 0 else maps, maps, 4, stride=2, padding=1),
                     make_norm(norm, maps, 2, **norm_options), nn.ReLU()]
        return nn.Sequential(*stem)

    def encode_question(self, question: torch.Tensor, length: torch.Tensor) -> torch.Tensor:
        """The GRU's state after each question's last token: ``(N, gru_size)``.

        The GRU reads the whole padded question (no host read of ``length`` per batch: the state
        at a word does not depend on the padding after it).
        """
        out, _ = self.gru(self.embedding(question))
        last = (length - 1).clamp(min=0).view(-1, 1, 1).expand(-1, 1, out.shape[-1])
        return out.gather(1, last).squeeze(1)

    def film_parameters(self, q: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """``gamma``, ``beta`` of shape ``(N, blocks, maps)`` for question codes ``q``, per ``film`` mode."""
        n, maps = q.shape[0], self.sizes["maps"]
        delta_gamma, beta = self.film_generator(q).view(n, len(self.blocks), 2, maps).unbind(2)
        gamma = 1 + delta_gamma
        if self.mode == "gamma_only":
            beta = torch.zeros_like(beta)
        elif self.mode == "beta_only":
            gamma = torch.ones_like(gamma)
        return gamma, beta

    def forward(self, x, question=None, length=None) -> torch.Tensor:
        if question is None:  # an Inputs
            images, question, length = x["images"][x["image"]], x["question"], x["length"]
        else:
            images = x
        if self.image_kind == "pixels":
            h = self.stem(images.float() / 127.5 - 1.0)
        else:
            images = images.float()
            h = self.stem(torch.cat([images, coordinate_maps(len(images), *images.shape[2:], images.device, images.dtype)], 1))
        coords = coordinate_maps(h.shape[0], h.shape[2], h.shape[3], h.device, h.dtype)
        q = self.encode_question(question, length) if self.gru is not None else None
        gamma = beta = None
        if self.film_generator is not None:
            gamma, beta = self.film_parameters(q)
        for b, block in enumerate(self.blocks):
            h = block(h, coords, None if gamma is None else gamma[:, b], None if beta is None else beta[:, b])
        h = F.relu(self.classifier_norm(self.classifier_conv(torch.cat([h, coords], 1))))
        pooled = h.amax(dim=(2, 3))
        if self.mode == "late_fusion":
            pooled = torch.cat([pooled, q], 1)
        return self.mlp(pooled)
