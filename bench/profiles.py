"""Training profiles: how long and how big a run is. A dataset plugin may override a profile's values."""
from __future__ import annotations

from dataclasses import dataclass, fields


@dataclass(frozen=True)
class Profile:
    epochs: int
    batch_size: int
    optimizer: str  # "sgd" (momentum 0.9, nesterov) or "adamw"
    lr: float
    weight_decay: float
    max_train_examples: int | None = None  # train on a fixed subset (None = all)
    max_val_examples: int | None = None  # validate on a fixed subset (None = all)
    max_test_examples: int | None = None  # score on a fixed random test subset, the same for every run (None = all)
    val_every: int = 1  # epochs between validation passes in the curve (the last epoch is always validated)
    precision: str = "fp32"  # "bf16": training forward passes under bf16 autocast (gates decide in fp32); eval is fp32


PROFILES: dict[str, Profile] = {
    "smoke": Profile(epochs=1, batch_size=64, optimizer="sgd", lr=0.05, weight_decay=5e-4, max_train_examples=512),
    # `quick` (make bench, ≤ 10 min on 2 cores) scores 1,000 val and 2,000 test examples (±1 pp at 90 % accuracy);
    # longer profiles score every one
    "quick": Profile(epochs=15, batch_size=128, optimizer="sgd", lr=0.1, weight_decay=5e-4, val_every=5,
                     max_val_examples=1000, max_test_examples=2000),
    "standard": Profile(epochs=60, batch_size=128, optimizer="sgd", lr=0.1, weight_decay=5e-4),
    "paper": Profile(epochs=180, batch_size=128, optimizer="sgd", lr=0.1, weight_decay=1e-4),
}

PROFILE_FIELDS = [f.name for f in fields(Profile)]
