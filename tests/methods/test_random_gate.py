"""Random-gate control (methods.md §7): per-block rates from an option or a trained method's record."""
from __future__ import annotations

import dataclasses

import pytest
import torch
from torch import nn

from bench import DynBenchError, registry
from bench.records import RunRecord, load_record, save_record
from bench.train import make_spec
from bench.gating.wrappers import gated_units
from tests.models import small_backbone
from tests.methods.common import built, check_macs_match_pruned, check_masked_equals_skip, eval_trace, toy_train

FAMILIES = ["resnet_cifar", "resmlp", "textcnn"]


def fake_record(rates: dict[str, float]) -> RunRecord:
    return RunRecord(spec={}, spec_hash="abc", code_hash="x", seeds={}, data={}, curve=[], train_seconds=0.0,
                     wall_seconds=0.0, versions={}, hardware={}, created="now",
                     metrics={"val_exec_rate_per_unit": rates})


@pytest.mark.parametrize("family", FAMILIES)
def test_rates_hold_in_training_and_eval(family: str) -> None:
    _, model = built("random_gate", family, rates=None, keep_rate=0.3)
    x = model.example_input(2000) if family == "resmlp" else model.example_input(400)
    torch.manual_seed(0)
    _, trace = eval_trace(model, x)
    for unit in trace.units():
        assert abs(trace.stacked(unit).mean() - 0.3) < 0.06
    check_masked_equals_skip(model, x[:16], batch1=False)
    check_macs_match_pruned(model, x[:8])


def test_two_eval_passes_agree_under_the_same_seed() -> None:
    _, model = built("random_gate", "resmlp")
    x = model.example_input(16)
    torch.manual_seed(1)
    first, _ = eval_trace(model, x)
    torch.manual_seed(1)
    second, _ = eval_trace(model, x)
    assert torch.equal(first, second)


def test_rates_per_block_and_from_a_record(tmp_path) -> None:
    method, _ = built("random_gate", "resmlp", rates=[0.2, 0.5, 0.9])
    assert method.rates == {"blocks.0": 0.2, "blocks.1": 0.5, "blocks.2": 0.9}
    path = tmp_path / "runs" / "abc.json"
    save_record(path, fake_record({"blocks.1": 0.25, "blocks.2": 0.75}))  # e.g. SkipNet: blocks.0 ungated
    method, _ = built("random_gate", "resmlp", match_record=str(path))
    assert method.rates == {"blocks.0": 1.0, "blocks.1": 0.25, "blocks.2": 0.75}


def test_the_execution_rate_follows_keep_rate_after_training() -> None:
    rates = {}
    for keep in (0.2, 0.8):
        method, model = built("random_gate", "resmlp", keep_rate=keep)
        toy_train(method, model, epochs=1, steps_per_epoch=3)
        _, trace = eval_trace(model, model.example_input(512))
        rates[keep] = sum(trace.exec_rate_per_unit().values()) / 3
    assert rates[0.2] < rates[0.8]


def test_bad_options_are_clear_errors(tmp_path) -> None:
    control = registry.get_method("random_gate")
    for options in ({"keep_rate": -0.5}, {"keep_rate": 1.2}, {"rates": [0.5, 3.0]}, {"composition": "x"},
                    {"match_record": str(tmp_path / "missing.json")}, {"rates": [0.5], "match_record": "abc"}):
        with pytest.raises(DynBenchError):
            control(**options)
    with pytest.raises(DynBenchError, match="2 entries for 3 blocks"):
        built("random_gate", "resmlp", rates=[0.5, 0.5])
    with pytest.raises(DynBenchError, match="has none"):
        control().build(nn.Linear(3, 2))


def test_channel_gates_keep_each_channel_at_the_matched_runs_validation_rate(tmp_path) -> None:
    """BAS's control (§7): channel-level random gates at the matched record's per-channel val rates."""
    _, reference = built("batch_shaping", "resmlp")
    widths = {unit.name: unit.width for unit in gated_units(reference)}
    per_gate = {name: torch.linspace(0, 1, width).tolist() for name, width in widths.items()}
    record = fake_record({name: 0.5 for name in widths})
    record.metrics["val_exec_rate_per_gate"] = per_gate
    record.metrics["exec_rate_per_unit"] = {name: 0.9 for name in widths}  # test rates: never copied
    path = tmp_path / "bas.json"
    save_record(path, record)
    method, model = built("random_gate", "resmlp", match_record=str(path), unit="channel")
    torch.manual_seed(0)
    _, trace = eval_trace(model, model.example_input(4000))
    for name in widths:
        torch.testing.assert_close(trace.stacked(name).mean(0), torch.tensor(per_gate[name]), atol=0.03, rtol=0)
    check_masked_equals_skip(model, model.example_input(16), batch1=False)
    check_macs_match_pruned(model, model.example_input(4))
    with pytest.raises(DynBenchError, match="unit=channel"):
        registry.get_method("random_gate")(match_record=str(path))  # block gates at channel rates: meaningless


def test_a_control_matched_to_another_setting_or_no_record_is_a_clear_error(tmp_path) -> None:
    record = fake_record({"blocks.1": 0.5})
    record.spec = {"method": "skipnet", "dataset": "adult", "backbone": "resmlp", "backbone_options": {}}
    record.spec_hash = "feedfacefeedface"
    path = tmp_path / "skipnet.json"
    save_record(path, record)
    with pytest.raises(DynBenchError, match=r"feedfacefeedface \(skipnet\) was trained on adult on resmlp, but this run "
                                            r"is digits on resnet8"):
        make_spec("random_gate", "digits", profile="smoke", method_options={"match_record": str(path)})
    with pytest.raises(DynBenchError, match="neither a record file nor a spec hash"):
        make_spec("static_small", "digits", profile="smoke", method_options={"match_record": str(tmp_path / "nope.json")})
    spec = make_spec("random_gate", "adult", profile="smoke", backbone="resmlp", backbone_options={},
                     method_options={"match_record": str(path)})
    assert spec.method_options["match_record"] == str(path)


def test_static_small_takes_its_budget_from_the_matched_runs_validation_macs(tmp_path) -> None:
    record = fake_record({"blocks.1": 0.5})
    record.metrics.update({"dense_macs": 1000, "executed_macs": {"mean": 900.0}, "val_executed_macs": {"mean": 420.0}})
    path = tmp_path / "gated.json"
    save_record(path, record)
    method = registry.get_method("static_small")(match_record=str(path))
    assert method.config["mac_budget"] == 0.42  # validation, not the test figure (0.9)
    method.build(small_backbone("resmlp"))
    assert method.extra_metrics(None, None, None)["matched_record"]["spec_hash"] == "abc"
    record.metrics["val_executed_macs"] = {"mean": 1001.0}  # a gated run that saved nothing: dense is its control
    save_record(path, record)
    with pytest.raises(DynBenchError, match="executes 100.1 % of its dense MACs"):
        registry.get_method("static_small")(match_record=str(path))


def test_a_control_is_retrained_when_the_run_it_matches_was_retrained(tmp_path) -> None:
    from bench.data import resolve_data_root
    from bench.train import run

    results = tmp_path / "results"
    gated = make_spec("convnet_aig", "digits", profile="smoke", max_val_examples=64, max_test_examples=64)
    record, _ = run(gated, resolve_data_root(None), results, progress=False)
    matched = str(results / "runs" / f"{gated.hash}.json")
    control = make_spec("random_gate", "digits", profile="smoke", max_val_examples=64, max_test_examples=64,
                        method_options={"match_record": matched})
    first, reused = run(control, resolve_data_root(None), results, progress=False)
    assert not reused and first.metrics["matched_record"]["spec_hash"] == gated.hash
    assert run(control, resolve_data_root(None), results, progress=False)[1]  # unchanged: reused
    run(gated, resolve_data_root(None), results, force=True, progress=False)  # the matched run is retrained
    again, reused = run(control, resolve_data_root(None), results, progress=False)
    assert not reused and again.metrics["matched_record"]["created"] == load_record(results / "runs" / f"{gated.hash}.json").created
