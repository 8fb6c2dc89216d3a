"""Model families. Each takes the norm as a string and asks ``make_norm`` for its layers."""

from __future__ import annotations

from omegaconf import DictConfig, OmegaConf
from torch import nn

from normbench.errors import ConfigError
from normbench.models.cnn import CNN
from normbench.models.convpool import ConvPoolCNNC
from normbench.models.film import FiLMNet
from normbench.models.mlp import MLP
from normbench.models.recurrent import LSTM
from normbench.models.resnet import ResNet
from normbench.norms import get_norm

# Which dataset kinds each model can consume.
_ACCEPTS = {"mlp": {"signal", "image"}, "cnn": {"signal", "image"}, "lstm": {"signal", "image", "text"},
            "resnet": {"image"}, "convpool": {"image"}, "film": {"vqa"}}
_CLASSES = {"mlp": MLP, "cnn": CNN, "lstm": LSTM, "resnet": ResNet, "convpool": ConvPoolCNNC, "film": FiLMNet}
# Keys of the norm config group that act on the whole run, not on a layer.
_RUN_LEVEL_NORM_KEYS = ("name", "description", "label", "sync", "population", "population_samples", "also_exact",
                        "batch_dependent")
# What build_model passes a model itself: not options of the model config group.
_FROM_THE_RUN = ("input_shape", "num_classes", "norm", "norm_options", "data_kind", "data_info")
# What to suggest when a model meets data it cannot read.
_HINTS = {"film": "use dataset=clevr_like or sort_of_clevr (generated offline) or dataset=clevr dataset.root=DIR",
          "vqa": "visual question answering needs model=film"}


def plain(cfg) -> dict:
    """A config group as a plain dict (lists as lists), whether a DictConfig or a dict."""
    return OmegaConf.to_container(cfg, resolve=True) if isinstance(cfg, DictConfig) else dict(cfg)


def norm_options(norm_cfg) -> dict:
    """The options of a ``norm`` config group, as ``make_norm`` takes them."""
    return {k: v for k, v in plain(norm_cfg).items() if k not in _RUN_LEVEL_NORM_KEYS}


def register_model(name: str, cls: type[nn.Module], reads: set[str]) -> type[nn.Module]:
    """Make ``model=name`` build ``cls(input_shape, num_classes, norm, norm_options, **model options)``
    for data of the kinds ``reads`` (``signal``, ``image``, ``text``, ``vqa``); a user's module
    calls it (see ``plugins`` and ``examples/``). Its layers ask :func:`~normbench.norms.make_norm`."""
    _CLASSES[name], _ACCEPTS[name] = cls, set(reads)
    return cls


def check_model_options(model_cfg) -> None:
    """Raise :class:`ConfigError` for a ``model`` option its class does not take (``model=cnn
    model.depth=3``: the CNN has no depth); a class taking ``**options`` checks its own."""
    import inspect

    cls = _CLASSES.get(model_cfg.name)
    if cls is None:
        return  # check_model_reads names the known models
    params = inspect.signature(cls.__init__).parameters
    if any(p.kind is inspect.Parameter.VAR_KEYWORD for p in params.values()):
        return
    given = {k for k in plain(model_cfg) if k not in ("name", "description")}
    taken = [k for k in list(params)[1:] if k not in _FROM_THE_RUN]
    unknown = sorted(given - set(taken))
    if unknown:
        raise ConfigError(f"model={model_cfg.name} takes no option {', '.join(map(repr, unknown))}; its options: "
                          f"{', '.join(taken) or 'none'}")


def check_model_reads(name: str, dataset: str, kind: str) -> None:
    """Raise :class:`ConfigError` unless model ``name`` exists and reads ``kind`` data (of ``dataset``)."""
    if name not in _CLASSES:
        raise ConfigError(f"unknown model '{name}'; known models: {', '.join(_CLASSES)}")
    if kind not in _ACCEPTS[name]:
        raise ConfigError(
            f"model={name} cannot read dataset={dataset} ({kind} data); "
            f"it takes {' or '.join(sorted(_ACCEPTS[name]))} data"
            + (f"; {_HINTS[name if name in _HINTS else kind]}" if name in _HINTS or kind in _HINTS else "")
        )


def build_model(model_cfg, norm_cfg, data) -> nn.Module:
    """The model ``model_cfg.name`` for ``data`` with the normalization ``norm_cfg.name``.

    Raises :class:`ConfigError` for a model that cannot read the data or a norm that cannot
    go into the model, before any training.
    """
    name = model_cfg.name
    check_model_reads(name, data.name, data.kind)
    options = {k: v for k, v in plain(model_cfg).items() if k not in ("name", "description")}
    if getattr(_CLASSES[name], "data_kind_aware", False):
        options["data_kind"] = data.kind
    if getattr(_CLASSES[name], "data_info_aware", False):
        options["data_info"] = data.info
    norm = get_norm(norm_cfg.name)
    model = _CLASSES[name](data.input_shape, data.num_classes, norm.name, norm_options(norm_cfg), **options)
    return norm.prepare_model(model) if norm.prepare_model else model


__all__ = ["register_model", "build_model", "check_model_options", "check_model_reads", "norm_options"]
