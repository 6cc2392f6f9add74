"""Plugin registry: method and dataset plugins, found as files in `methods/` and `datasets/` or as entry points.

Plugin files are searched only in the project's own folders (the checkout this package comes from), then in
folders the user names ($DYNBENCH_PLUGIN_PATH or `dynbench --plugin-path`), never implicitly in the working
directory: a stray `datasets/mnist.py` wherever `dynbench` is started must not run, nor replace a built-in.

Plugin files are loaded by path under the private namespace `_dynbench_plugins`, so a folder named
`datasets/` never shadows the Hugging Face `datasets` package. A plugin that fails to import becomes a
`BrokenPlugin` with its error (shown by `dynbench list`); the rest of the suite keeps working.
"""
from __future__ import annotations

import difflib
import importlib.metadata
import importlib.util
import os
import sys
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import TypeVar

from bench import DynBenchError

KINDS = ("methods", "datasets")
ENTRY_POINT_GROUPS = {"methods": "dynbench.methods", "datasets": "dynbench.datasets"}
PRIVATE_NAMESPACE = "_dynbench_plugins"
SOURCE_ROOT = Path(__file__).resolve().parent.parent

T = TypeVar("T", bound=type)

_registered: dict[str, dict[str, type]] = {kind: {} for kind in KINDS}
_broken: dict[str, dict[str, "BrokenPlugin"]] = {kind: {} for kind in KINDS}
_origin: dict[str, dict[str, str]] = {kind: {} for kind in KINDS}
_discovered = False


@dataclass(frozen=True)
class BrokenPlugin:
    """A plugin that could not be imported: where it lives and why it failed (one line)."""

    name: str
    origin: str
    error: str


def register_method(cls: T) -> T:
    """Class decorator: make a `bench.method.Method` subclass available under `cls.name`."""
    return _register("methods", cls)


def register_dataset(cls: T) -> T:
    """Class decorator: make a `bench.data.dataset.DatasetPlugin` subclass available under `cls.name`."""
    return _register("datasets", cls)


def _register(kind: str, cls: T) -> T:
    name = getattr(cls, "name", None)
    if not isinstance(name, str) or not name:
        raise TypeError(f"{cls.__qualname__} needs a non-empty class attribute `name` to be registered")
    origin = getattr(sys.modules.get(cls.__module__), "__file__", None) or cls.__module__
    previous = _origin[kind].get(name)
    if previous is not None and previous != origin:
        raise DynBenchError(f"{kind[:-1]} '{name}' is registered twice: {previous} and {origin}; rename one")
    _registered[kind][name] = cls
    _origin[kind][name] = origin
    return cls


PLUGIN_PATH_ENV = "DYNBENCH_PLUGIN_PATH"


def plugin_roots() -> list[Path]:
    """Folders that may hold `methods/` and `datasets/`: the source checkout this package was installed
    from, then the folders named in $DYNBENCH_PLUGIN_PATH (in order). The working directory is not one
    of them unless named. The first file of a given name wins, so a user folder cannot replace a built-in."""
    candidates = [SOURCE_ROOT] + [Path(p) for p in os.environ.get(PLUGIN_PATH_ENV, "").split(os.pathsep) if p]
    roots: list[Path] = []
    for root in candidates:
        root = root.resolve()
        if root not in roots and any((root / kind).is_dir() for kind in KINDS):
            roots.append(root)
    return roots


def discover(force: bool = False) -> None:
    """Import every plugin file and entry point once. Import errors are kept, never raised."""
    global _discovered
    if _discovered and not force:
        return
    _discovered = True
    seen_files: dict[tuple[str, str], Path] = {}
    for root in plugin_roots():
        for kind in KINDS:
            folder = root / kind
            if not folder.is_dir():
                continue
            for path in sorted(folder.glob("*.py")):
                if path.name.startswith("_"):
                    continue
                if (kind, path.stem) in seen_files:  # said, not silently dropped: the user meant it to load
                    _broken[kind].setdefault(path.stem, BrokenPlugin(
                        path.stem, str(path), f"not loaded: {seen_files[(kind, path.stem)]} has that name; rename this file"))
                    continue
                seen_files[(kind, path.stem)] = path
                _load_file(kind, path)
    for kind, group in ENTRY_POINT_GROUPS.items():
        for entry_point in importlib.metadata.entry_points(group=group):
            try:
                obj = entry_point.load()
                if isinstance(obj, type) and getattr(obj, "name", None) not in _registered[kind]:
                    _register(kind, obj)
            except Exception as exc:  # a broken third-party plugin must not break the suite
                _broken[kind][entry_point.name] = BrokenPlugin(entry_point.name, f"entry point {entry_point.value}", _one_line(exc))


def rediscover() -> None:
    """Forget every plugin and discover again (a suite worker whose plugin path differs from its fork
    server's: a plugin of the same name from another folder must replace, not clash with, the old one)."""
    for table in (_registered, _broken, _origin):
        for kind in KINDS:
            table[kind].clear()
    discover(force=True)


def _load_file(kind: str, path: Path) -> None:
    module_name = f"{PRIVATE_NAMESPACE}.{kind}.{path.stem}"
    spec = importlib.util.spec_from_file_location(module_name, path)
    assert spec is not None and spec.loader is not None
    module = importlib.util.module_from_spec(spec)
    sys.modules[module_name] = module
    try:
        spec.loader.exec_module(module)
    except Exception as exc:  # includes SyntaxError; KeyboardInterrupt still propagates
        sys.modules.pop(module_name, None)
        _broken[kind][path.stem] = BrokenPlugin(path.stem, str(path), _one_line(exc))


def _one_line(exc: BaseException) -> str:
    if isinstance(exc, SyntaxError):
        return f"SyntaxError: {exc.msg} (line {exc.lineno})"
    frames = traceback.extract_tb(exc.__traceback__)
    where = f" (line {frames[-1].lineno})" if frames else ""
    return f"{type(exc).__name__}: {exc}{where}"


def available(kind: str) -> dict[str, type]:
    """Registered plugins of one kind, by name, sorted."""
    discover()
    return dict(sorted(_registered[kind].items()))


def broken(kind: str) -> dict[str, BrokenPlugin]:
    """Plugins of one kind that failed to import, by name."""
    discover()
    return dict(sorted(_broken[kind].items()))


def get(kind: str, name: str) -> type:
    """The plugin class called `name`, or a `DynBenchError` saying why not and what was meant."""
    plugins = available(kind)
    if name in plugins:
        return plugins[name]
    singular = kind[:-1]
    failed = broken(kind).get(name)
    if failed is not None:
        raise DynBenchError(f"{singular} '{name}' failed to import from {failed.origin}: {failed.error}; fix that file")
    guesses = difflib.get_close_matches(name, list(plugins), n=3, cutoff=0.5)
    hint = f"did you mean {' or '.join(repr(g) for g in guesses)}? " if guesses else ""
    raise DynBenchError(f"unknown {singular} '{name}': {hint}`dynbench list` shows the {kind} ({', '.join(plugins) or 'none'})")


def get_method(name: str) -> type:
    return get("methods", name)


def get_dataset(name: str) -> type:
    return get("datasets", name)
