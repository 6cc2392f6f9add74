"""Imported once by the fork server of suite workers: the training code and every plugin (with the
libraries they import, seconds of work), so that each worker, forked from it, starts in milliseconds."""
from __future__ import annotations

import bench.suite  # noqa: F401 - the worker's entry point and the training loop
from bench import registry

registry.discover()
