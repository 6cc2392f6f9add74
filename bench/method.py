"""The method plugin interface: how a dynamic-computation method hooks into the one training loop."""
from __future__ import annotations

from dataclasses import dataclass
from typing import Any, ClassVar

import torch
from torch import nn

from bench import DynBenchError
from bench.gates import GateTrace


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
        self.preset = preset
        self.config = config
        self.validate()

    def validate(self) -> None:
        """Raise `DynBenchError` for option values that make no sense (negative budgets, rates > 1)."""

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
