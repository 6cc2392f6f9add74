"""DynBench: a benchmark suite for dynamic computation (gated blocks, channels and neurons)."""
from __future__ import annotations

__version__ = "0.1.0"


class DynBenchError(Exception):
    """An error caused by the user's input; its message says what to do. The CLI prints it in one line."""
