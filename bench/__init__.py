"""DynBench: a benchmark suite for dynamic computation (gated blocks, channels and neurons)."""
from __future__ import annotations

import importlib
import importlib.abc
import importlib.util
import sys

__version__ = "0.1.0"


class DynBenchError(Exception):
    """An error caused by the user's input; its message says what to do. The CLI prints it in one line."""


# Where 0.1's flat modules went in the 0.2 grouping; plugins written against the old paths still import.
MOVED_MODULES = {
    **{f"bench.{name}": f"bench.gating.{name}" for name in ("gates", "blockgates", "wrappers", "units", "gate_stats", "pruning")},
    **{f"bench.{name}": f"bench.measure.{name}" for name in ("macs", "latency", "metrics", "throughput")},
    **{f"bench.{name}": f"bench.data.{name}" for name in ("dataset", "formats")},
    **{f"bench.{name}": f"bench.reporting.{name}"
       for name in ("tables", "report", "plots", "boards", "board_display", "stats", "noise")},
    "bench.eval_latency": "bench.reporting.latency_figures",
}


class _OldModulePaths(importlib.abc.MetaPathFinder, importlib.abc.Loader):
    """`import bench.gates` gives the module `bench.gating.gates` itself (one module object, not a copy)."""

    def find_spec(self, name, path=None, target=None):
        return importlib.util.spec_from_loader(name, self) if name in MOVED_MODULES else None

    def create_module(self, spec):
        return importlib.import_module(MOVED_MODULES[spec.name])

    def exec_module(self, module) -> None:  # already executed under its new name
        pass


if not any(isinstance(finder, _OldModulePaths) for finder in sys.meta_path):
    sys.meta_path.append(_OldModulePaths())
