"""The training loop on the always-available digits dataset: it learns, is reproducible, and records honestly."""
from __future__ import annotations

import json

import pytest
import torch

from bench import DynBenchError
from bench.data import resolve_data_root
from bench.records import load_record, record_path
from bench.train import derive_seed, make_spec, run, warmup_cosine


@pytest.fixture(scope="module")
def smoke_run(tmp_path_factory):
    results = tmp_path_factory.mktemp("results")
    spec = make_spec("dense", "digits", profile="smoke", epochs=3, max_val_examples=100, max_test_examples=200)
    record, reused = run(spec, resolve_data_root(None), results, progress=True)  # the CLI's path: bar and epoch lines
    return spec, record, reused, results


def test_a_smoke_run_learns_and_writes_a_complete_record(smoke_run):
    spec, record, reused, results = smoke_run
    assert not reused
    assert record.metrics["test"]["accuracy"] > 0.5  # 10 classes: chance is 0.1
    assert len(record.curve) == 3 and record.curve[-1]["loss"] < record.curve[0]["loss"]
    assert all("val_accuracy" in entry for entry in record.curve)  # smoke validates every epoch
    assert record_path(results, spec).stat().st_mode & 0o777 == 0o644  # readable by others, like any result file
    saved = json.loads(record_path(results, spec).read_text())
    assert saved["spec"] == spec.to_dict() and saved["spec_hash"] == spec.hash
    assert saved["versions"]["torch"] == torch.__version__.split("+")[0] or saved["versions"]["torch"] == torch.__version__
    assert {"device", "cpu_count", "torch_threads"} <= set(saved["hardware"])
    assert saved["data"] == {"source": "bundled", "train": 1293, "val": 144, "test": 360, "train_used": 512, "val_used": 100,
                             "test_used": 200}
    assert set(saved["seeds"]) == {"split", "init", "order", "augment", "gates"}


def test_dense_macs_come_from_fvcore_and_equal_the_hand_count(smoke_run):
    _, record, _, _ = smoke_run
    # ResNet-8 on 1x8x8: stem 9*1*16*64; stage 1: 2 convs 9*16*16*64; stage 2: 9*16*32*16 + 9*32*32*16 + 16*32*16;
    # stage 3: 9*32*64*4 + 9*64*64*4 + 32*64*4; head 64*10.
    hand = 9216 + 2 * 147456 + (73728 + 147456 + 8192) + (73728 + 147456 + 8192) + 640
    assert record.metrics["dense_macs"] == hand
    assert record.metrics["executed_macs"] == {"dense": hand, "mean": hand, "std": 0.0, "p50": hand, "p95": hand}
    assert record.metrics["mac_saving"] == 0.0


def test_the_same_spec_reuses_its_record_unless_forced(smoke_run, monkeypatch):
    spec, record, _, results = smoke_run
    import bench.train as train

    def must_not_train(*args, **kwargs):
        raise AssertionError("a recorded spec must not be retrained")

    monkeypatch.setattr(train, "_train_and_evaluate", must_not_train)
    again, reused = run(spec, resolve_data_root(None), results, progress=False)
    assert reused and again.created == record.created
    with pytest.raises(AssertionError):
        run(spec, resolve_data_root(None), results, force=True, progress=False)


def test_a_stale_record_is_rerun(smoke_run, monkeypatch):
    spec, _, _, results = smoke_run
    path = record_path(results, spec)
    saved = json.loads(path.read_text())
    saved["code_hash"] = "0" * 16  # as if the plugin code had changed since
    path.write_text(json.dumps(saved))
    rerun, reused = run(spec, resolve_data_root(None), results, progress=False)
    assert not reused and load_record(path).code_hash == rerun.code_hash != "0" * 16


def test_runs_are_reproducible_for_a_seed(tmp_path):
    spec = make_spec("dense", "digits", profile="smoke", epochs=1, seed=7)
    first, _ = run(spec, resolve_data_root(None), tmp_path / "a", progress=False)
    second, _ = run(spec, resolve_data_root(None), tmp_path / "b", progress=False)
    assert first.metrics["test"] == second.metrics["test"]
    assert [e["loss"] for e in first.curve] == [e["loss"] for e in second.curve]


def test_an_interrupted_run_leaves_no_record(tmp_path, monkeypatch):
    from bench.method import Method
    from bench import registry

    calls = {"n": 0}

    def interrupt_on_third_step(self, model, step):
        calls["n"] += 1
        if calls["n"] == 3:
            raise KeyboardInterrupt
        return {}

    monkeypatch.setattr(registry.get_method("dense"), "extra_losses", interrupt_on_third_step)
    spec = make_spec("dense", "digits", profile="smoke")
    with pytest.raises(KeyboardInterrupt):
        run(spec, resolve_data_root(None), tmp_path, progress=False)
    assert not (tmp_path / "runs").exists() or not any((tmp_path / "runs").iterdir())


def test_profiles_and_overrides_resolve_into_the_spec():
    spec = make_spec("dense", "digits", profile="quick", epochs=5, lr=0.01)
    assert (spec.epochs, spec.lr, spec.batch_size, spec.backbone) == (5, 0.01, 128, "resnet8")
    assert make_spec("dense", "digits", profile="quick").epochs == 20  # the dataset's override of the profile
    assert make_spec("dense", "digits", seed=1).hash != make_spec("dense", "digits", seed=2).hash
    with pytest.raises(DynBenchError, match="unknown profile 'quik'.*did you mean 'quick'"):
        make_spec("dense", "digits", profile="quik")
    with pytest.raises(DynBenchError, match="has no preset 'fast'"):
        make_spec("dense", "digits", preset="fast")
    with pytest.raises(DynBenchError, match="has no option budget"):
        make_spec("dense", "digits", method_options={"budget": 0.5})


def test_seeds_differ_per_axis_and_are_stable():
    assert derive_seed(0, "init") != derive_seed(0, "order")
    assert derive_seed(3, "gates") == derive_seed(3, "gates")


def test_learning_rate_warms_up_then_decays_to_zero():
    factors = [warmup_cosine(step, 1000) for step in range(1000)]
    assert factors[0] < factors[19] == pytest.approx(1.0)
    assert all(a >= b for a, b in zip(factors[20:], factors[21:]))
    assert factors[-1] < 1e-4


def test_a_gated_method_records_executed_macs_and_rates_and_leaves_latency_to_the_quiet_timing_pass(tmp_path):
    """A block-gated model (random gates at rate 0.5, a control every leaderboard has) through the one loop."""
    from bench import registry
    from bench.measure.latency import random_gated
    from bench.method import Method

    class HalfRandomBlocks(Method):
        name = "test_half_random_blocks"
        description = "every block kept with probability 0.5 per sample"

        def build(self, backbone):
            return random_gated(backbone, "block", keep_rate=0.5)

    registry._register("methods", HalfRandomBlocks)
    try:
        spec = make_spec("test_half_random_blocks", "digits", profile="smoke")
        record, _ = run(spec, resolve_data_root(None), tmp_path, progress=False)
    finally:
        registry._registered["methods"].pop("test_half_random_blocks")
        registry._origin["methods"].pop("test_half_random_blocks")
    metrics = record.metrics
    assert set(metrics["exec_rate_per_unit"]) == {"blocks.0", "blocks.1", "blocks.2"}
    assert all(0.35 < rate < 0.65 for rate in metrics["exec_rate_per_unit"].values())
    macs = metrics["executed_macs"]
    assert macs["mean"] < macs["dense"] and macs["std"] > 0 and 0.2 < metrics["mac_saving"] < 0.8
    assert "latency" not in metrics  # timed after training, apart from other runs (bench.measure.latency)


def test_a_gated_run_records_validation_figures_for_choices_and_the_all_on_control(tmp_path):
    """Controls and presets read validation figures (methods.md §9): per-unit and per-channel rates,
    executed MACs and diagnostics on the val trace; the all-on control is scored beside the run."""
    spec = make_spec("batch_shaping", "digits", profile="smoke", epochs=2, max_val_examples=100, max_test_examples=200)
    record, _ = run(spec, resolve_data_root(None), tmp_path, progress=False)
    metrics = record.metrics
    assert set(metrics["val_exec_rate_per_gate"]) == set(metrics["val_exec_rate_per_unit"])
    for unit, rates in metrics["val_exec_rate_per_gate"].items():  # per channel; their mean is the unit's rate
        assert len(rates) > 1 and abs(sum(rates) / len(rates) - metrics["val_exec_rate_per_unit"][unit]) < 1e-6
    assert metrics["val_executed_macs"]["dense"] == metrics["dense_macs"]
    assert "gate_share_conditional" in metrics["val_extra_metrics"]
    assert metrics["input_dependence"]["gates"] == sum(len(r) for r in metrics["val_exec_rate_per_gate"].values())
    all_on = metrics["all_on"]
    assert set(all_on) == {"val", "test"} and 0 <= all_on["test"]["accuracy"] <= 1
    assert set(metrics["zero_loss_terms"]) <= {key[len("loss_"):] for key in record.curve[0] if key.startswith("loss_")}


def test_a_loss_term_that_stayed_zero_for_the_whole_run_is_named():
    from bench.train import zero_loss_terms

    curve = [{"loss": 1.0, "loss_flops": 0.0, "loss_consistency": 0.2}, {"loss": 0.5, "loss_flops": 0.0, "loss_consistency": 0.0}]
    assert zero_loss_terms(curve) == ["flops"]
    assert zero_loss_terms(curve[:1] + [{"loss": 0.4, "loss_flops": 1e-9}]) == []


def test_the_all_on_control_equals_the_trained_model_with_gates_replaced_by_ones():
    from bench.data import BatchPipeline, load_splits
    from bench.train import all_on_metrics, evaluate
    from bench import registry
    from tests.methods.common import force_gates

    plugin = registry.get_dataset("digits")()
    splits = load_splits(plugin, resolve_data_root(None))
    method = registry.get_method("convnet_aig")()
    torch.manual_seed(0)
    from bench.backbones import build_backbone
    model = method.build(build_backbone("resnet8", tuple(splits.train.x.shape[1:]), 10)).eval()
    pipeline = BatchPipeline(plugin, torch.device("cpu"))
    val, test = splits.val.subset(torch.arange(64)), splits.test.subset(torch.arange(64))
    forced = all_on_metrics(model, val, test, pipeline)
    force_gates(model, 1.0)
    assert forced == {"val": evaluate(model, val, pipeline)[0], "test": evaluate(model, test, pipeline)[0]}


def test_bf16_precision_is_a_profile_value_that_trains_and_leaves_fp32_spec_hashes_unchanged(tmp_path):
    """Specs made before `precision` existed keep their hash (fp32 is left out of the hashed dict); a bf16
    run is its own spec, learns, and scores in fp32."""
    fp32 = make_spec("dense", "digits", profile="smoke", epochs=2)
    assert "precision" not in fp32.to_dict() and fp32.precision == "fp32"
    bf16 = make_spec("dense", "digits", profile="smoke", epochs=2, precision="bf16")
    assert bf16.to_dict()["precision"] == "bf16" and bf16.hash != fp32.hash
    with pytest.raises(DynBenchError, match="precision must be one of fp32, bf16, not 'fp16'"):
        make_spec("dense", "digits", profile="smoke", precision="fp16")
    record, _ = run(bf16, resolve_data_root(None), tmp_path, progress=False)
    assert record.spec["precision"] == "bf16"
    assert record.curve[-1]["loss"] < record.curve[0]["loss"] and record.metrics["test"]["accuracy"] > 0.3


def test_gates_decide_in_fp32_under_a_bf16_forward():
    """A bf16 autocast speeds up the convolutions; the gate's decisions stay fp32, computed from the
    input in fp32."""
    from bench import registry
    from bench.backbones import build_backbone
    from bench.gating.gates import GateTrace
    from bench.gating.wrappers import gated_units
    from bench.train import forward_precision

    torch.manual_seed(0)
    model = registry.get_method("convnet_aig")().build(build_backbone("resnet8", (3, 32, 32), 10)).eval()
    unit = gated_units(model)[0]
    x = torch.randn(8, unit.block.first[0].in_channels, 32, 32)
    with forward_precision("bf16", torch.device("cpu")):
        assert unit.block.first(x).dtype == torch.bfloat16  # the autocast is on
        with GateTrace.recording() as mixed:
            decided = unit.decide(x.bfloat16())
    with GateTrace.recording() as plain:
        reference = unit.decide(x.bfloat16().float())  # an fp32 gate on the same (bf16-rounded) input
    assert decided.dtype == torch.float32 and torch.equal(decided, reference)
    assert mixed.extra(unit.name, "p_on").dtype == torch.float32
    torch.testing.assert_close(mixed.extra(unit.name, "p_on"), plain.extra(unit.name, "p_on"), rtol=0, atol=0)


def test_bf16_on_a_cpu_without_native_bf16_is_warned_about():
    from bench.train import slow_bf16_warning

    cpu = torch.device("cpu")
    assert "10x slower" in slow_bf16_warning("bf16", cpu, "flags : fpu avx avx2 fma")
    assert slow_bf16_warning("bf16", cpu, "flags : avx2 avx512f avx512_bf16") is None
    assert slow_bf16_warning("bf16", cpu, "flags : avx2 amx_bf16 amx_tile") is None
    assert slow_bf16_warning("fp32", cpu, "flags : avx2") is None
