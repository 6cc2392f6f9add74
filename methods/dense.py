"""The dense backbone: no gates, every block runs for every input. The reference every method is measured against."""
from __future__ import annotations

from bench.method import Method
from bench.registry import register_method


@register_method
class Dense(Method):
    name = "dense"
    description = "dense backbone, no gates (the reference: 0 % MAC saving)"
