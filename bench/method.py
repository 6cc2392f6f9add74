"""The method plugin interface: how a dynamic-computation method hooks into the one training loop."""
from __future__ import annotations

import math
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, ClassVar

import torch
from torch import nn

from bench import DynBenchError
from bench.gating.gates import GateTrace

if TYPE_CHECKING:
    from bench.records import RunSpec


@dataclass
class StepContext:
    """What a method sees of one training step, to compute its extra loss terms."""

    inputs: torch.Tensor
    targets: torch.Tensor
    logits: torch.Tensor
    per_sample_loss: torch.Tensor  # task loss of each sample, shape [N] (SkipNet's reward needs it)
    trace: GateTrace
    epoch: int  # 0-based
    num_epochs: int
    step: int  # 0-based, over the whole run
    total_steps: int


class Method:
    """Base class of a method plugin. Subclass it in `methods/<name>.py` and decorate with
    `@bench.registry.register_method`.

    `options` holds every option with its default (documented in the plugin's docstring);
    `presets` names option sets so one method yields several points on the accuracy-MACs front.
    """

    name: ClassVar[str]
    description: ClassVar[str] = ""
    options: ClassVar[dict[str, Any]] = {}
    presets: ClassVar[dict[str, dict[str, Any]]] = {"default": {}}

    def __init__(self, preset: str = "default", **overrides: Any) -> None:
        if preset not in self.presets:
            raise DynBenchError(f"method '{self.name}' has no preset '{preset}'; presets: {', '.join(self.presets)}")
        config = {**self.options, **self.presets[preset], **overrides}
        unknown = sorted(set(config) - set(self.options))
        if unknown:
            known = ", ".join(self.options) or "none"
            raise DynBenchError(f"method '{self.name}' has no option {', '.join(unknown)}; options: {known}")
        for key in overrides:
            check_option_type(f"method '{self.name}'", key, overrides[key], self.options[key])
        self.preset = preset
        self.config = config
        self.validate()

    def validate(self) -> None:
        """Raise `DynBenchError` for option values that make no sense (negative budgets, rates > 1).
        Types are already checked against each option's default (`check_option_type`)."""

    def check_run(self, spec: RunSpec) -> None:
        """Raise `DynBenchError` when the options do not fit this run's setting (e.g. a control matched to
        a run of another dataset or backbone). Called when the spec is made, before anything trains."""

    def build(self, backbone: nn.Module) -> nn.Module:
        """Wrap the backbone's residual blocks with this method's gates; the dense method returns it as is."""
        return backbone

    def on_epoch_start(self, model: nn.Module, epoch: int, num_epochs: int) -> None:
        """Per-epoch schedule hook (loss curricula, phases such as SkipNet's RL phase)."""

    def extra_losses(self, model: nn.Module, step: StepContext) -> dict[str, torch.Tensor]:
        """Loss terms added to the task loss, by name (logged per epoch)."""
        return {}

    def extra_metrics(self, model: nn.Module, example: torch.Tensor, trace: GateTrace) -> dict[str, Any]:
        """Method-specific metrics merged into the record's metrics after the final test evaluation:
        `trace` is the test split's eval-mode gate trace, `example` a batch of one input (for MAC
        counts). Paper-style metrics (SkipNet's computation %, CosineGate's `macs_nominal`) go here."""
        return {}

    def state_dict(self) -> dict[str, Any]:
        """The method's own training state that is not in the model (tensors, plain values), saved in the
        per-epoch checkpoint so an interrupted run resumes exactly. State that `on_epoch_start` sets
        every epoch (SkipNet's phase, MIDL's k) need not be here: a resumed run calls it again for the
        epoch it continues, and `dynbench eval` for the last epoch."""
        return {}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore what `state_dict` returned (on resume, after `build` and before the next epoch)."""


def check_option_type(owner: str, key: str, value: Any, default: Any, flag: str = "--option") -> None:
    """A `DynBenchError` unless `value` has the type of the option's default: a number for a float (an int
    will do), an int for an int, a bool for a bool (never a number), a string for a string, a list for a
    list or tuple. A default of None admits anything; the method's `validate()` checks that."""
    if default is None:
        return
    if isinstance(default, bool):
        ok, expected = isinstance(value, bool), "true or false"
    elif isinstance(default, int):
        ok, expected = isinstance(value, int) and not isinstance(value, bool), "an integer"
    elif isinstance(default, float):
        ok = isinstance(value, (int, float)) and not isinstance(value, bool) and math.isfinite(value)
        expected = "a finite number"
    elif isinstance(default, str):
        ok, expected = isinstance(value, str), "a string"
    elif isinstance(default, (list, tuple)):
        ok, expected = isinstance(value, (list, tuple)), "a list"
    else:
        ok, expected = isinstance(value, type(default)), type(default).__name__
    if not ok:
        raise DynBenchError(f"{owner}: option '{key}' must be {expected} (default {default!r}), "
                            f"not {value!r}; e.g. {flag} {key}={default!r}")
