"""What every key of normbench's config may be, declared once: the types, ranges and choices
that :mod:`normbench.config.validation` checks right after Hydra composes a config (and, for every value
of a sweep, before the sweep starts), without importing torch.

Three tables:

- :data:`RUN_RULES`: the run's own keys and the trainer's, each with its value when absent;
- :data:`GROUP_RULES`: the options of each config group, whichever component the group chose
  (a user's norm from a plugin gets ``norm.eps`` and ``norm.affine`` checked too);
- :data:`COMPONENT_RULES`: a component's own meaning of a key the group's other components use
  differently (``dataset.train_split`` is a fraction for MNIST-1D, a split's name for CLEVR).

The choices themselves (``model.film`` modes, LSTM inits, ...) are defined here, and the modules
that implement them import them. A test checks that every key of every packaged config has a rule.
"""

from __future__ import annotations

from typing import Any

from normbench.config.rules import (
    Rule,
    at_least,
    at_least_zero,
    below_one,
    boolean,
    explained,
    fraction,
    increasing_positives,
    integer,
    list_of,
    non_negative_int,
    number,
    one_of,
    open_fraction,
    or_null,
    positive_int,
    positive_number,
    steps,
    text,
)

ABSENT = object()  # a required key: its absence is an error

#: ``norm.population``: the statistics batch norm uses at evaluation (see population.py).
POPULATION_MODES = ("running", "exact", "precise")
#: ``dataset.draw``: the same data in every run, or a draw that follows the run's seed.
DRAWS = ("fixed", "seed")
ACTIVATIONS = ("relu", "sigmoid", "tanh", "gelu")
FILM_MODES = ("full", "gamma_only", "beta_only", "image_only", "late_fusion")
FILM_INITS = ("default", "kaiming_uniform")
FILM_PRESETS = ("small", "paper")
FILM_SIZES = ("blocks", "maps", "embedding_dim", "gru_size", "stem_layers", "classifier_channels",
              "classifier_hidden")
LSTM_INPUT_INITS = ("orthogonal", "xavier", "default")
LSTM_RECURRENT_INITS = ("orthogonal", "identity", "xavier", "default")
LSTM_IMAGE_SEQUENCES = ("pixels", "rows")
LSTM_IMPLEMENTATIONS = ("cell", "torch")
RESNET_VARIANTS = ("auto", "cifar", "imagenet")
VQA_FEATURES = ("pixels", "resnet101")
SCHEDULES = ("constant", "cosine", "step")
LR_SCALINGS = ("none", "linear")


def _objective(value) -> str | None:
    from normbench.metrics import metric_of

    if isinstance(value, str) and value.startswith("test_"):
        return ("selects on the test set, which is reported, never selected on; use auto (the validation "
                "metric) or a val_ or train_ metric (val_acc, val_bpc, val_loss)")
    ok = value == "auto" or isinstance(value, str) and metric_of(value) is not None
    return None if ok else "must be auto or a final metric of a run (val_acc, val_bpc, val_loss, ...)"


def _device(value) -> str | None:
    ok = isinstance(value, str) and (value in ("auto", "cpu", "cuda") or value.startswith("cuda:")
                                     and value[5:].isdigit())
    return None if ok else "is not a device; use auto, cpu, cuda or cuda:N"


_IOFFE = " (Ioffe relaxes to r_max=3, d_max=5)"

#: (key, rule, value when absent): the run's keys, checked in this order; the first bad value stops.
RUN_RULES: list[tuple[str, Rule, Any]] = [
    ("batch_size", positive_int, ABSENT),
    ("seed", integer, ABSENT),
    ("plugins", or_null(list_of(text)), None),
    ("objective", _objective, "auto"),
    ("trainer.max_steps", or_null(positive_int), ABSENT),
    ("trainer.epochs", positive_int, ABSENT),
    ("trainer.eval_every", or_null(positive_int), ABSENT),
    ("trainer.eval_batch_size", positive_int, ABSENT),
    ("trainer.train_eval_samples", positive_int, ABSENT),
    ("trainer.log_every", positive_int, ABSENT),
    ("trainer.target_acc", or_null(fraction), None),
    ("trainer.target_bpc", or_null(explained(positive_number, "must be a positive number of bits per character")),
     None),
    ("trainer.amp", boolean, False),
    ("trainer.channels_last", boolean, False),
    ("trainer.compile", boolean, False),
    ("trainer.deterministic", boolean, False),
    ("trainer.compile_mode", one_of("default", "reduce-overhead", "max-autotune", "max-autotune-no-cudagraphs"),
     "default"),
    ("trainer.progress", one_of("auto", "bar", "lines", "none"), ABSENT),
    ("trainer.threads", lambda v: None if v == "auto" else positive_int(v) and "must be auto or a positive integer",
     "auto"),
    ("trainer.device", _device, "auto"),
    ("trainer.pack", one_of("none", "seed"), "none"),
    ("trainer.pack_size", positive_int, 16),
    ("trainer.reuse", boolean, True),
]

_NAMES: dict[str, Rule] = {"name": text, "description": text}
_SIZE = or_null(positive_int)

#: group -> key -> rule, for the keys the group's chosen config has.
GROUP_RULES: dict[str, dict[str, Rule]] = {
    "norm": {
        **_NAMES, "label": text, "batch_dependent": boolean, "eps": positive_number, "affine": boolean,
        "momentum": fraction, "mean_only": boolean, "sync": boolean, "data_init": boolean,
        "gamma_init": or_null(explained(positive_number, "must be a positive number (Cooijmans et al. use 0.1)")),
        "groups": positive_int, "virtual_batch_size": positive_int,
        "r_max": at_least(1, _IOFFE), "d_max": at_least(0, _IOFFE), "relax_from": steps, "r_max_at": steps,
        "d_max_at": steps,
        "population": one_of(*POPULATION_MODES, why=" (the statistics batch norm uses at evaluation)"),
        "population_samples": _SIZE, "also_exact": boolean,
    },
    "model": {
        **_NAMES, "channels": list_of(positive_int), "strides": list_of(positive_int), "kernel_size": positive_int,
        "activation": one_of(*ACTIVATIONS), "depth": positive_int, "width": positive_int,
        "width1": positive_int, "width2": positive_int, "dropout": below_one, "input_noise": at_least_zero,
        "leak": at_least_zero,
        "preset": one_of(*FILM_PRESETS), "film": one_of(*FILM_MODES), "init": or_null(one_of(*FILM_INITS)),
        **{size: _SIZE for size in FILM_SIZES},
        "hidden_size": positive_int, "num_layers": positive_int, "values_per_step": positive_int,
        "image_sequence": one_of(*LSTM_IMAGE_SEQUENCES), "input_init": one_of(*LSTM_INPUT_INITS),
        "recurrent_init": one_of(*LSTM_RECURRENT_INITS), "forget_bias": number, "h0_noise": at_least_zero,
        "impl": one_of(*LSTM_IMPLEMENTATIONS),
        "variant": one_of(*RESNET_VARIANTS), "zero_init_residual": boolean,
    },
    "dataset": {
        **_NAMES, "root": or_null(text), "download": boolean, "augment": boolean, "pad": non_negative_int,
        "normalize": boolean, "train_samples": _SIZE, "test_samples": _SIZE, "permute": boolean,
        "permute_seed": integer, "label_noise": fraction, "seed": integer,
        "image_size": positive_int, "features": one_of(*VQA_FEATURES), "resnet_weights": or_null(text),
        "train_split": text, "test_split": text, "train_images": positive_int, "val_images": positive_int,
        "questions_per_image": positive_int, "min_objects": positive_int, "max_objects": positive_int,
        "generator_seed": integer, "test_fraction": open_fraction, "split_seed": integer,
        "workers": explained(non_negative_int, "must be a non-negative integer (0: load in the main process)"),
        "crop": positive_int, "resize": positive_int, "num_samples": positive_int, "seq_len": positive_int,
        "eval_lengths": list_of(positive_int), "max_train_chars": _SIZE,
        "num_test": or_null(positive_int),
        "val_fraction": explained(below_one, "must be the share of training samples held out for validation, "
                                             "at least 0 and below 1 (0: none)"),
        "draw": one_of(*DRAWS),
    },
    "optim": {
        **_NAMES, "lr": positive_number, "betas": list_of(below_one, length=2), "eps": positive_number,
        "alpha": fraction, "momentum": at_least_zero, "nesterov": boolean, "weight_decay": at_least_zero,
        "lr_scaling": one_of(*LR_SCALINGS), "base_batch_size": positive_int, "schedule": one_of(*SCHEDULES),
        "milestones": explained(increasing_positives, "must be increasing positive epochs, e.g. [30, 60, 90]"),
        "gamma": explained(positive_number, "must be a positive factor, e.g. 0.1"),
        "warmup_epochs": explained(at_least_zero, "must be a non-negative number of epochs"),
        "warmup_steps": or_null(non_negative_int), "grad_clip_norm": or_null(positive_number),
        "norm_weight_decay": boolean,
    },
    "logger": {
        "name": text, "project": text, "entity": or_null(text), "mode": or_null(one_of("online", "offline", "disabled")),
        "group": or_null(text), "run_name": or_null(text), "tags": list_of(text), "dir": or_null(text),
    },
}

#: (group, component name) -> key -> rule: where a component reads a key otherwise than the group.
COMPONENT_RULES: dict[tuple[str, str], dict[str, Rule]] = {
    ("dataset", "mnist1d"): {"train_split": explained(open_fraction, "must be the training share, strictly "
                                                                     "between 0 and 1 (0.8: 4000/1000)")},
}


def rules_for(group: str, component: str | None) -> dict[str, Rule]:
    """The rule of each key of config group ``group`` when it chose ``component`` (its ``name``)."""
    if group == "trainer":
        return {key.split(".", 1)[1]: rule for key, rule, _ in RUN_RULES if key.startswith("trainer.")}
    return {**GROUP_RULES.get(group, {}), **COMPONENT_RULES.get((group, str(component)), {})}
