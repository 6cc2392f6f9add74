"""Plugin discovery: built-ins listed, new files picked up, broken files reported, unknown names explained."""
from __future__ import annotations

import pytest

from bench import DynBenchError, registry
from tests.fixtures.cli import REPO, run_cli



def readme_example_plugin() -> str:
    """The minimal method plugin shown in the README, so the documented example is the one tested."""
    readme = (REPO / "README.md").read_text()
    block = readme.split("```python\n# methods/frozen_stem.py\n", 1)[1]
    return block.split("```", 1)[0]


def test_builtin_plugins_are_registered():
    assert "dense" in registry.available("methods")
    assert "digits" in registry.available("datasets")


def test_unknown_method_suggests_the_closest_name():
    with pytest.raises(DynBenchError, match=r"unknown method 'dens'.*did you mean 'dense'"):
        registry.get_method("dens")


def test_unknown_dataset_lists_the_known_ones():
    with pytest.raises(DynBenchError, match=r"unknown dataset 'imagenet'.*digits"):
        registry.get_dataset("imagenet")


def test_a_dropped_in_method_file_is_listed_and_runs(repo_copy, tmp_path):
    (repo_copy / "methods" / "frozen_stem.py").write_text(readme_example_plugin())
    listing = run_cli("list", cwd=repo_copy)
    assert listing.returncode == 0, listing.stderr
    assert "frozen_stem" in listing.stdout and "dense backbone whose stem is not trained" in listing.stdout
    result = run_cli("run", "--method", "frozen_stem", "--dataset", "digits", "--profile", "smoke", "--preset", "bn_too",
                     "--results", str(tmp_path / "results"), cwd=repo_copy)
    assert result.returncode == 0, result.stderr
    assert "frozen_stem:bn_too on digits" in result.stdout
    assert len(list((tmp_path / "results" / "runs").glob("*.json"))) == 1


def test_a_plugin_with_a_syntax_error_is_reported_and_the_rest_still_works(repo_copy):
    (repo_copy / "methods" / "broken.py").write_text("def oops(:\n    pass\n")
    listing = run_cli("list", cwd=repo_copy)
    assert listing.returncode == 0, listing.stderr
    assert "BROKEN method plugin 'broken'" in listing.stdout and "SyntaxError" in listing.stdout
    assert "dense" in listing.stdout and "digits" in listing.stdout
    result = run_cli("run", "--method", "broken", "--dataset", "digits", cwd=repo_copy)
    assert result.returncode == 2
    assert result.stderr.strip().count("\n") == 0, "the error must be one line"
    assert "method 'broken' failed to import" in result.stderr and "broken.py" in result.stderr


def test_a_plugin_that_raises_on_import_is_reported_with_its_error(repo_copy):
    (repo_copy / "datasets" / "needs_missing.py").write_text("import package_that_is_not_installed\n")
    listing = run_cli("list", cwd=repo_copy)
    assert "BROKEN dataset plugin 'needs_missing'" in listing.stdout
    assert "ModuleNotFoundError" in listing.stdout


def test_entry_point_plugins_are_registered(monkeypatch):
    from importlib import metadata

    from bench.method import Method

    class FromEntryPoint(Method):
        name = "from_entry_point"
        description = "registered through the dynbench.methods entry-point group"

    class FakeEntryPoint:
        name, value = "from_entry_point", "third_party:FromEntryPoint"

        def load(self):
            return FromEntryPoint

    real = metadata.entry_points
    monkeypatch.setattr(metadata, "entry_points",
                        lambda group=None: [FakeEntryPoint()] if group == "dynbench.methods" else real(group=group))
    registry.discover(force=True)
    try:
        assert registry.get_method("from_entry_point") is FromEntryPoint
    finally:
        registry._registered["methods"].pop("from_entry_point", None)
        registry._origin["methods"].pop("from_entry_point", None)


def test_plugins_written_against_the_flat_0_1_module_paths_still_import():
    import bench.gating.gates
    import bench.gates
    from bench.wrappers import BlockGate
    from bench.gating.wrappers import BlockGate as moved

    assert bench.gates is bench.gating.gates
    assert BlockGate is moved
