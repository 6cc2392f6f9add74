"""The fault suite of issue 20: each test reproduces one fault a user or a tester hit, and checks the
promise the README's "Fault model" makes for it. Runs are smoke runs on digits (bundled, seconds each);
fault-injecting method plugins are written to a folder named by $DYNBENCH_PLUGIN_PATH."""
from __future__ import annotations

import hashlib
import json
import math
import os
import pickle
import signal
import subprocess
import sys
import time
import uuid
from pathlib import Path

import pytest
import torch

from bench import DynBenchError, registry
from bench.cli import main
from bench.data import resolve_data_root
from bench.records import load_record, record_path
from bench.suite import load_suite, run_suite
from bench.train import make_spec, run
from tests.fixtures.cli import REPO, run_cli
from tests.fixtures.dataset_files import write_cifar_batches

PLUGIN_PATH_ENV = "DYNBENCH_PLUGIN_PATH"  # folders of plugins the user names

# Method plugins that inject one fault each (a plugin imports only from bench, as real ones do).
FAULT_PLUGINS = {
    "fault_raiser": '''
from bench.method import Method
from bench.registry import register_method

@register_method
class Raiser(Method):
    name = "fault_raiser"
    def extra_losses(self, model, step):
        raise RuntimeError("boom in extra_losses")
''',
    "fault_crasher": '''
import os
from bench.method import Method
from bench.registry import register_method

@register_method
class Crasher(Method):
    name = "fault_crasher"
    def build(self, backbone):
        os._exit(3)  # the worker dies without a Python exception, as in a segfault or the OOM killer
''',
    "fault_sleeper": '''
import os, time
from pathlib import Path
from bench.method import Method
from bench.registry import register_method

@register_method
class Sleeper(Method):
    """Marks that it trains (in $FAULT_MARKS), then holds the worker for `seconds`."""
    name = "fault_sleeper"
    options = {"seconds": 1.0}
    def on_epoch_start(self, model, epoch, num_epochs):
        marks = os.environ.get("FAULT_MARKS")
        if marks:
            Path(marks, f"{os.getpid()}-{time.monotonic_ns()}").touch()
        time.sleep(self.config["seconds"])
''',
    "fault_nan_eval": '''
import torch
from torch import nn
from bench.method import Method
from bench.registry import register_method

class NanInEval(nn.Module):
    def __init__(self, backbone):
        super().__init__()
        self.backbone = backbone
    def forward(self, x):
        logits = self.backbone(x)
        return logits if self.training else logits * float("nan")

@register_method
class NanEval(Method):
    name = "fault_nan_eval"
    def build(self, backbone):
        return NanInEval(backbone)
''',
    "fault_nan_extra": '''
import torch
from bench.method import Method
from bench.registry import register_method

@register_method
class NanExtra(Method):
    name = "fault_nan_extra"
    def extra_losses(self, model, step):
        return {"budget": step.logits.sum() * 0.0, "sparsity": torch.tensor(float("nan"))}
''',
}


@pytest.fixture
def plugin_dir(tmp_path: Path, monkeypatch) -> Path:
    """The fault plugins in a folder named by $DYNBENCH_PLUGIN_PATH, also registered in this process."""
    folder = tmp_path / "plugins"
    (folder / "methods").mkdir(parents=True)
    for name, source in FAULT_PLUGINS.items():
        (folder / "methods" / f"{name}.py").write_text(source)
    monkeypatch.setenv(PLUGIN_PATH_ENV, str(folder))
    registry.discover()
    for name in FAULT_PLUGINS:
        registry._load_file("methods", folder / "methods" / f"{name}.py")
    yield folder
    for name in FAULT_PLUGINS:
        registry._registered["methods"].pop(name, None)
        registry._origin["methods"].pop(name, None)


def write_suite(folder: Path, methods: list[str], seeds: tuple[int, ...] = (0,)) -> Path:
    path = folder / "faults.toml"
    path.write_text(f'profile = "smoke"\nseeds = {list(seeds)}\ndatasets = ["digits"]\nmethods = {json.dumps(methods)}\n')
    return path


def cli(capsys, *argv: str) -> tuple[int, str]:
    """`dynbench ARGV` in this process: (exit status, stderr)."""
    try:
        status = main(list(argv))
    except SystemExit as exc:  # argparse refusing a value
        status = exc.code
    return status, capsys.readouterr().err


# ---- 1. one failing run never stops a suite ------------------------------------------------------

def test_1_a_run_raising_any_exception_is_reported_with_its_traceback_and_the_suite_goes_on(plugin_dir, tmp_path, capsys):
    results = tmp_path / "results"
    suite = load_suite(str(write_suite(tmp_path, ["fault_raiser", "dense"])))
    assert run_suite(suite, resolve_data_root(None), results) == 1
    progress = capsys.readouterr().err
    assert "[1/2] fault_raiser on digits" in progress and "FAILED: RuntimeError: boom in extra_losses" in progress
    assert "[2/2] dense on digits" in progress and "test accuracy" in progress  # the later run still ran
    spec = make_spec("fault_raiser", "digits", profile="smoke")
    log = (results / "logs" / f"{spec.hash}.log").read_text()
    assert "Traceback (most recent call last)" in log and "extra_losses" in log and "boom in extra_losses" in log
    assert str(results / "logs") in progress and not record_path(results, spec).exists()
    assert record_path(results, make_spec("dense", "digits", profile="smoke")).exists()


def test_1_a_worker_process_that_dies_fails_its_run_only(plugin_dir, tmp_path, capsys):
    """os._exit in a worker breaks the process pool; the suite names the run that died and finishes the rest."""
    results = tmp_path / "results"
    suite = load_suite(str(write_suite(tmp_path, ["fault_crasher", "dense"])))
    assert run_suite(suite, resolve_data_root(None), results, jobs=2) == 1
    progress = capsys.readouterr().err
    crashed = [line for line in progress.splitlines() if "fault_crasher on digits" in line]
    assert len(crashed) == 1 and "FAILED: the worker process running it died" in crashed[0]
    assert record_path(results, make_spec("dense", "digits", profile="smoke")).exists()
    assert (results / "logs" / f"{make_spec('fault_crasher', 'digits', profile='smoke').hash}.log").exists()


# ---- 2. no Python file in the working directory runs as a plugin ----------------------------------

def test_2_a_datasets_folder_in_the_working_directory_is_not_executed_nor_replaces_a_builtin(tmp_path):
    """The issue's reproduction: `datasets/mnist.py` printing "ran" in the cwd, then `dynbench list`."""
    hostile = tmp_path / "x"
    (hostile / "datasets").mkdir(parents=True)
    (hostile / "datasets" / "mnist.py").write_text('print("ran")\nopen("executed", "w").close()\n')
    env = {k: v for k, v in os.environ.items() if k != PLUGIN_PATH_ENV}
    listing = subprocess.run([sys.executable, "-m", "bench", "list"], cwd=hostile, capture_output=True, text=True,
                             env={**env, "PYTHONPATH": str(REPO)}, timeout=300)
    assert listing.returncode == 0, listing.stderr
    assert "ran" not in listing.stdout.split() and not (hostile / "executed").exists()
    assert "\n  mnist " in listing.stdout and "BROKEN" not in listing.stdout


def test_2_plugin_folders_are_the_project_and_the_named_ones_only(tmp_path, monkeypatch):
    (tmp_path / "methods").mkdir()
    monkeypatch.chdir(tmp_path)
    monkeypatch.delenv(PLUGIN_PATH_ENV, raising=False)
    assert registry.plugin_roots() == [registry.SOURCE_ROOT]
    monkeypatch.setenv(PLUGIN_PATH_ENV, str(tmp_path))
    assert registry.plugin_roots() == [registry.SOURCE_ROOT, tmp_path.resolve()]  # named: after the built-ins


def test_2_a_folder_named_with_plugin_path_is_loaded(tmp_path, monkeypatch, capsys):
    (tmp_path / "mine" / "methods").mkdir(parents=True)
    (tmp_path / "mine" / "methods" / "fault_raiser.py").write_text(FAULT_PLUGINS["fault_raiser"])
    monkeypatch.setenv(PLUGIN_PATH_ENV, "")  # restored afterwards: the option sets it for suite workers
    try:
        assert main(["--plugin-path", str(tmp_path / "mine"), "describe", "fault_raiser"]) == 0
        assert str(tmp_path / "mine" / "methods" / "fault_raiser.py") in capsys.readouterr().out
    finally:
        registry._registered["methods"].pop("fault_raiser", None)
        registry._origin["methods"].pop("fault_raiser", None)


# ---- 4. no data file is unpickled unchecked -------------------------------------------------------

class _RunsCode:
    """What a crafted pickle does: call a function of the loader's choosing while it is read."""

    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


def _official_md5s_of_these_batches(monkeypatch, plugin_cls) -> None:
    """Treat the fixture's batches as genuine (their MD5s as the published ones): only the meta file is crafted."""
    def batch_files(self, root, split):
        names = plugin_cls.torchvision_class.train_list if split == "train" else plugin_cls.torchvision_class.test_list
        paths = [self.batches_dir(root) / name for name, _ in names]
        return [(p, hashlib.md5(p.read_bytes()).hexdigest()) for p in paths]
    monkeypatch.setattr(plugin_cls, "batch_files", batch_files)


@pytest.mark.parametrize("verify_checksums", [True, False])
def test_4_a_crafted_cifar_meta_pickle_is_refused_before_it_runs_code(tmp_path, monkeypatch, verify_checksums):
    cls = registry.get_dataset("cifar10")
    write_cifar_batches(tmp_path, cls.classes, per_batch=4)
    marker = tmp_path / "code-ran"
    (tmp_path / "cifar-10-batches-py" / "batches.meta").write_bytes(pickle.dumps(_RunsCode(marker)))
    _official_md5s_of_these_batches(monkeypatch, cls)
    expected = "batches.meta is corrupt or not the official file" if verify_checksums else "refused to load posix.system"
    with pytest.raises(DynBenchError, match=expected):
        cls(verify_checksums=verify_checksums).load(tmp_path, "train")
    assert not marker.exists()


def test_4_a_crafted_cifar_data_batch_cannot_run_code_either(tmp_path):
    cls = registry.get_dataset("cifar10")
    write_cifar_batches(tmp_path, cls.classes, per_batch=4)
    marker = tmp_path / "code-ran"
    (tmp_path / "cifar-10-batches-py" / "data_batch_1").write_bytes(pickle.dumps({b"data": _RunsCode(marker)}))
    with pytest.raises(DynBenchError, match="data_batch_1 is truncated or not a CIFAR batch.*refused"):
        cls(verify_checksums=False).load(tmp_path, "train")
    assert not marker.exists()


@pytest.mark.parametrize("meta", [["airplane"], {b"label_names": 7}, {b"label_names": [1, 2]}])
def test_4_a_cifar_meta_file_of_the_wrong_structure_is_a_clean_error(tmp_path, meta):
    cls = registry.get_dataset("cifar10")
    write_cifar_batches(tmp_path, cls.classes, per_batch=4)
    (tmp_path / "cifar-10-batches-py" / "batches.meta").write_bytes(pickle.dumps(meta))
    with pytest.raises(DynBenchError, match="batches.meta is not a CIFAR meta file"):
        cls(verify_checksums=False).load(tmp_path, "train")


def test_4_the_meta_md5s_are_torchvisions_published_ones():
    assert registry.get_dataset("cifar10").torchvision_class.meta["md5"] == "5ff9c542aee3614f3951f8cda6e48888"
    assert registry.get_dataset("cifar100").torchvision_class.meta["md5"] == "7973b15100ade9c7d40fb424638fde48"


def test_4_data_list_does_not_claim_an_md5_check_that_fails(tmp_path, capsys):
    """Issue 18 item 6: batches with another MD5 were listed as 'official ... (MD5 checked)'."""
    write_cifar_batches(tmp_path, registry.get_dataset("cifar10").classes, per_batch=4)
    assert main(["data", "list", "--data-root", str(tmp_path)]) == 0
    line = next(line for line in capsys.readouterr().out.splitlines() if line.strip().startswith("cifar10 "))
    assert "unavailable" in line and "is corrupt or not the official file" in line and "MD5 checked" not in line


# ---- 5. workers die with their suite --------------------------------------------------------------

def _processes_with(marker: str) -> list[int]:
    """Live (not zombie) processes whose environment holds `marker`."""
    found = []
    for entry in Path("/proc").iterdir():
        if not entry.name.isdigit():
            continue
        try:
            if marker.encode() in (entry / "environ").read_bytes() and ") Z " not in (entry / "stat").read_text():
                found.append(int(entry.name))
        except OSError:
            continue
    return found


@pytest.mark.skipif(not Path("/proc/self/environ").exists(), reason="needs /proc (Linux)")
def test_5_kill_9_of_a_suite_with_two_workers_leaves_no_process_after_10_s(plugin_dir, tmp_path):
    marks = tmp_path / "marks"
    marks.mkdir()
    marker = f"DYNBENCH_FAULT_TEST={uuid.uuid4().hex}"
    suite = write_suite(tmp_path, ["fault_sleeper"], seeds=(0, 1, 2, 3))
    env = {**os.environ, "PYTHONPATH": str(REPO), "FAULT_MARKS": str(marks), marker.split("=")[0]: marker.split("=")[1],
           "OMP_NUM_THREADS": "1"}
    source = plugin_dir / "methods" / "fault_sleeper.py"  # each run holds its worker for 2 minutes
    source.write_text(source.read_text().replace('{"seconds": 1.0}', '{"seconds": 120.0}'))
    suite_process = subprocess.Popen([sys.executable, "-m", "bench", "suite", str(suite), "--jobs", "2",
                                      "--results", str(tmp_path / "results")], cwd=tmp_path, env=env,
                                     stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    try:
        deadline = time.monotonic() + 120
        while len(list(marks.iterdir())) < 2:  # both workers are training
            assert time.monotonic() < deadline and suite_process.poll() is None, "the workers never started"
            time.sleep(0.2)
        assert len(_processes_with(marker)) >= 3  # the suite and its two workers (and the fork server)
        suite_process.send_signal(signal.SIGKILL)
        suite_process.wait(timeout=10)
        killed = time.monotonic()
        while _processes_with(marker) and time.monotonic() - killed < 10:
            time.sleep(0.2)
        left = _processes_with(marker)
        assert not left, f"{len(left)} process(es) of the killed suite still alive after 10 s"
    finally:
        for pid in _processes_with(marker):
            os.kill(pid, signal.SIGKILL)


# ---- 6. every setting checked before anything trains ----------------------------------------------

BAD_RUN_SETTINGS = [  # (method, extra arguments, the one-line error)
    ("dense", ["--batch-size", "-5"], "--batch-size: must be at least 1, not -5"),
    ("dense", ["--batch-size", "0"], "--batch-size: must be at least 1, not 0"),
    ("dense", ["--epochs", "0"], "--epochs: must be at least 1, not 0"),
    ("dense", ["--lr", "-1"], "--lr: must be greater than 0"),
    ("dense", ["--lr", "nan"], "--lr: must be greater than 0"),
    ("dense", ["--lr", "abc"], "--lr: must be a number, not 'abc'"),
    ("dense", ["--backbone-option", "width=abc"], "backbone 'resnet8': option 'width' must be an integer"),
    ("dense", ["--backbone-option", "widht=8"], "backbone 'resnet8' has no option 'widht'"),
    ("dense", ["--seed", "-1"], "--seed: must be at least 0"),
    ("dense", ["--seed", "1.5"], "--seed: must be a whole number"),
    ("dense", ["--device", "cuda:7"], "device 'cuda:7' is not available on this machine"),
    ("dense", ["--device", "tpu"], "unknown device 'tpu'"),
    ("convnet_aig", ["--option", "weight=abc"], "option 'weight' must be a finite number (default 2.0), not 'abc'"),
    ("skipnet", ["--option", "alpha=abc"], "option 'alpha' must be a finite number (default 0.1), not 'abc'"),
    ("midl", ["--option", "rho=abc"], "option 'rho' must be a finite number (default 0.45), not 'abc'"),
    ("midl", ["--option", "rho=true"], "option 'rho' must be a finite number (default 0.45), not True"),
    ("convnet_aig", ["--option", "stochastic_eval=1"], "option 'stochastic_eval' must be true or false"),
]


@pytest.mark.parametrize("method, extra, message", BAD_RUN_SETTINGS,
                         ids=[f"{m} {' '.join(a)}" for m, a, _ in BAD_RUN_SETTINGS])
def test_6_a_bad_run_setting_is_a_one_line_error_and_nothing_trains(tmp_path, capsys, method, extra, message):
    if extra[0] == "--device" and torch.cuda.device_count() > 7:
        pytest.skip("this machine has 8 GPUs")
    status, err = cli(capsys, "run", "--method", method, "--dataset", "digits", "--profile", "smoke",
                      "--results", str(tmp_path / "r"), *extra)
    assert status == 2 and message in err
    assert err.strip().count("\n") == 0, err
    assert not list(tmp_path.glob("r/runs/*.json"))


BAD_SUITES = [
    ("seeds = [true]", "key 'seeds' must list integers of at least 0 (not true/false)"),
    ("seeds = [-1]", "key 'seeds' must list integers of at least 0"),
    ("seeds = []", "key 'seeds' is an empty list"),
    ('methods = []', "key 'methods' is an empty list"),
    ('datasets = []', "key 'datasets' is an empty list"),
]


@pytest.mark.parametrize("line, message", BAD_SUITES)
def test_6_a_bad_suite_file_is_refused_before_the_first_run(tmp_path, capsys, line, message):
    values = {"profile": '"smoke"', "seeds": "[0]", "datasets": '["digits"]', "methods": '["dense"]'}
    key = line.split(" =")[0]
    values[key] = line.split("= ", 1)[1]
    path = tmp_path / "bad.toml"
    path.write_text("".join(f"{k} = {v}\n" for k, v in values.items()))
    status, err = cli(capsys, "suite", str(path), "--results", str(tmp_path / "r"))
    assert status == 2 and message in err and "bad.toml:" in err and err.strip().count("\n") == 0
    assert not list(tmp_path.glob("r/runs/*.json"))


def test_6_jobs_zero_and_bad_spec_values_through_the_api(tmp_path, capsys):
    status, err = cli(capsys, "suite", "smoke", "--jobs", "0")
    assert status == 2 and "--jobs: must be at least 1, not 0" in err
    suite = load_suite(str(write_suite(tmp_path, ["dense"])))
    with pytest.raises(DynBenchError, match="--jobs must be a whole number of at least 1, not 0"):
        run_suite(suite, resolve_data_root(None), tmp_path / "r", jobs=0)
    for overrides, message in [({"batch_size": 0}, "batch_size"), ({"epochs": 2.5}, "epochs"),
                               ({"lr": math.inf}, "lr"), ({"optimizer": "adam"}, "optimizer")]:
        with pytest.raises(DynBenchError, match=message):
            make_spec("dense", "digits", profile="smoke", **overrides)
    with pytest.raises(DynBenchError, match="seed"):
        make_spec("dense", "digits", profile="smoke", seed=True)


# ---- 7. a NaN evaluation is a failed run, and a NaN loss names its term ----------------------------

def test_7_nan_evaluation_fails_the_run_naming_metric_and_split(plugin_dir, tmp_path):
    spec = make_spec("fault_nan_eval", "digits", profile="smoke")
    with pytest.raises(DynBenchError, match=r"non-finite values \(val\.loss, test\.loss"):
        run(spec, resolve_data_root(None), tmp_path, progress=False)
    assert not record_path(tmp_path, spec).exists()


def test_7_a_nan_extra_loss_names_the_term_that_went_nan(plugin_dir, tmp_path):
    spec = make_spec("fault_nan_extra", "digits", profile="smoke")
    with pytest.raises(DynBenchError, match=r"epoch 1 \(extra loss 'sparsity' = nan\)") as error:
        run(spec, resolve_data_root(None), tmp_path, progress=False)
    assert "budget" not in str(error.value)


# ---- 8. a results folder that cannot take the record is refused before training --------------------

def _bad_results_folders(tmp_path: Path) -> dict[str, Path]:
    a_file = tmp_path / "a-file"
    a_file.write_text("not a folder")
    runs_file = tmp_path / "runs-is-a-file"
    runs_file.mkdir()
    (runs_file / "runs").write_text("in the way")
    read_only = tmp_path / "read-only"
    (read_only / "runs").mkdir(parents=True)
    for folder in (read_only / "runs", read_only):
        folder.chmod(0o555)
    return {"is a file, not a folder": a_file, "runs is a file, not a folder": runs_file, "is read-only": read_only}


def test_8_a_results_folder_that_is_a_file_or_read_only_is_refused_before_training(plugin_dir, tmp_path):
    spec = make_spec("fault_raiser", "digits", profile="smoke")  # training it would raise RuntimeError, not this
    for message, results in _bad_results_folders(tmp_path).items():
        with pytest.raises(DynBenchError, match=message.split(" ", 1)[0] if message.startswith("runs") else message):
            run(spec, resolve_data_root(None), results, progress=False)
    suite = load_suite(str(write_suite(tmp_path, ["fault_raiser"])))
    with pytest.raises(DynBenchError, match="is a file, not a folder"):
        run_suite(suite, resolve_data_root(None), tmp_path / "a-file")
    (tmp_path / "read-only").chmod(0o755)


def test_8_a_full_disk_is_refused_before_training(plugin_dir, tmp_path):
    full = tmp_path / "full"
    full.mkdir()
    mounted = subprocess.run(["mount", "-t", "tmpfs", "-o", "size=64k", "tmpfs", str(full)], capture_output=True)
    if mounted.returncode != 0:
        pytest.skip(f"cannot mount a tiny tmpfs here: {mounted.stderr.decode().strip()}")
    try:
        fd = os.open(full / "filler", os.O_WRONLY | os.O_CREAT)
        try:  # fill the disk
            while os.write(fd, b"\0" * 4096):
                pass
        except OSError:
            pass
        finally:
            os.close(fd)
        with pytest.raises(DynBenchError, match=r"results folder .*(No space left|disk .* is full)"):
            run(make_spec("fault_raiser", "digits", profile="smoke"), resolve_data_root(None), full, progress=False)
    finally:
        subprocess.run(["umount", str(full)], check=True)


# ---- 9. two suites on one results folder share the runs ------------------------------------------

def test_9_two_suites_on_one_folder_train_each_run_once(plugin_dir, tmp_path):
    suite = write_suite(tmp_path, ["fault_sleeper"], seeds=(0, 1))
    results = tmp_path / "results"
    env = {**os.environ, "PYTHONPATH": str(REPO), "OMP_NUM_THREADS": "1"}  # two processes on a 2-core machine
    command = [sys.executable, "-m", "bench", "suite", str(suite), "--results", str(results)]
    processes = [subprocess.Popen(command, cwd=tmp_path, env=env, stderr=subprocess.PIPE, text=True) for _ in range(2)]
    outputs = [p.communicate(timeout=300)[1] for p in processes]
    assert all(p.returncode == 0 for p in processes), outputs
    trained = [line for out in outputs for line in out.splitlines() if ": test accuracy" in line]
    assert len(trained) == 2, "\n".join(outputs)  # each run trained by exactly one of the two suites
    assert len({line.split(": test")[0].split("] ", 1)[1] for line in trained}) == 2
    assert len(list(results.glob("runs/*.json"))) == 2 and not list(results.glob("runs/.*.claim"))


def test_9_a_claim_is_held_while_its_holder_lives_and_free_once_it_dies(tmp_path):
    from bench.suite import claim_run

    spec = make_spec("dense", "digits", profile="smoke")
    ready_read, ready_write = os.pipe()
    holder = os.fork()
    if holder == 0:  # the child holds the claim until it is killed
        try:
            with claim_run(tmp_path, spec) as other:
                os.write(ready_write, b"held" if other is None else b"refused")
                time.sleep(120)
        finally:
            os._exit(0)
    try:
        assert os.read(ready_read, 10) == b"held"
        with claim_run(tmp_path, spec) as other:
            assert other is not None and f"pid {holder}" in other
    finally:
        os.kill(holder, signal.SIGKILL)  # no chance to release it: the kernel drops the lock
        os.waitpid(holder, 0)
    with claim_run(tmp_path, spec) as other:
        assert other is None
    assert not list(tmp_path.glob("runs/.*.claim"))


# ---- 10. small ones: version, options, corrupt records, garbage caches ----------------------------

def test_10_version_and_a_methods_options_with_defaults_and_presets(capsys):
    with pytest.raises(SystemExit) as exited:
        main(["--version"])
    assert exited.value.code == 0 and capsys.readouterr().out.strip() == "dynbench 0.1.0"
    assert main(["describe", "convnet_aig"]) == 0
    out = capsys.readouterr().out
    assert "weight             2.0" in out and "t30                target=0.3" in out


def test_10_a_truncated_record_is_redone_with_a_warning(tmp_path, capsys):
    spec = make_spec("dense", "digits", profile="smoke")
    path = record_path(tmp_path, spec)
    path.parent.mkdir(parents=True)
    path.write_text('{"spec": {"method": "dense", "dat')
    record, reused = run(spec, resolve_data_root(None), tmp_path, progress=False)
    assert not reused and load_record(path).spec_hash == spec.hash
    assert "corrupt run record" in capsys.readouterr().err


def test_10_data_list_does_not_say_cached_for_a_garbage_cache_file(tmp_path, monkeypatch, capsys):
    from tests.fixtures.dataset_files import write_mnist_family

    monkeypatch.setenv("DYNBENCH_CACHE", str(tmp_path / "cache"))
    write_mnist_family(tmp_path / "data" / "MNIST" / "raw", gz=False)
    assert main(["data", "prepare", "mnist", "--data-root", str(tmp_path / "data")]) == 0
    assert "cache: cached at" in capsys.readouterr().out
    cached = next((tmp_path / "cache").rglob("mnist*.pt"))
    size = cached.stat().st_size
    cached.write_bytes((b"garbage" * size)[:size])  # same size, not a torch archive
    assert main(["data", "list", "--data-root", str(tmp_path / "data")]) == 0
    listed = capsys.readouterr().out
    assert f"cache: corrupt ({cached}), rebuilt on next use" in listed and "cached at" not in listed
