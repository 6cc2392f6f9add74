"""Backbone families: published sizes, shapes, input checks, text padding invariance."""
from __future__ import annotations

import pytest
import torch

from bench import DynBenchError
from bench.backbones import build_backbone
from bench.measure.macs import count_macs, count_params
from tests.models import SMALL, family, small_backbone  # noqa: F401 (family: fixture)

# He et al. 2016 (option A): ResNet-20 0.27 M, -32 0.46 M, -56 0.85 M, -110 1.7 M parameters. Option-B
# projections add 2,752 parameters at width 16 (two 1x1 convs + BN). Dense MACs: methods.md §7.
PUBLISHED = {20: (0.27e6, 40.8e6), 32: (0.46e6, 69.1e6), 56: (0.85e6, 125.8e6), 110: (1.7e6, 253.2e6)}


@pytest.mark.parametrize("depth", sorted(PUBLISHED))
def test_cifar_resnet_matches_published_params_and_macs(depth: int) -> None:
    model = build_backbone(f"resnet{depth}", (3, 32, 32), 10)
    params, macs = PUBLISHED[depth]
    assert abs(count_params(model) - 2752 - params) / params < 0.02
    assert abs(count_macs(model, model.example_input(1)) - macs) / macs < 0.002


def test_resnet_accepts_one_input_channel() -> None:
    model = build_backbone("resnet20", (1, 28, 28), 10)
    assert model(model.example_input(2)).shape == (2, 10)


def test_resmlp_and_textcnn_match_their_spec_sizes() -> None:
    mlp = build_backbone("resmlp", (108,), 2)  # methods.md §8: 32.8 k MACs per block, ≈ 0.15 M in all
    block_macs = count_macs(mlp, mlp.example_input(1), by_module=True)["blocks.0"]
    assert block_macs == 2 * 128 * 128
    text = build_backbone("textcnn", (256,), 2)  # ≈ 113 M MACs over the padded length
    assert abs(count_macs(text, text.example_input(1)) - 113e6) / 113e6 < 0.01


def test_every_family_gives_its_output_shape(family: str) -> None:
    model = small_backbone(family)
    logits = model(model.example_input(3))
    if family == "segnet":
        assert logits.shape == (3, 19, *model.in_shape[1:])
    else:
        assert logits.shape == (3, SMALL[family][2])


@pytest.mark.parametrize("name, options, message", [
    ("resnet21", {}, "6n\\+2"), ("resnt20", {}, "did you mean"), ("segnet50", {}, "18, 34"),
    ("resnet_cifar", {"colour": 1}, "colour"), ("resmlp", {"depth": 0}, "depth >= 1"),
])
def test_unknown_names_depths_and_options_are_clear_errors(name: str, options: dict, message: str) -> None:
    with pytest.raises(DynBenchError, match=message):
        build_backbone(name, (3, 32, 32) if "mlp" not in name else (10,), 10, **options)


@pytest.mark.parametrize("name, in_shape", [("resmlp", (3, 32, 32)), ("textcnn", (3, 32, 32)), ("resnet20", (10,)),
                                            ("segnet", (3, 30, 40))])
def test_backbone_rejects_an_in_shape_of_the_wrong_modality(name: str, in_shape: tuple) -> None:
    with pytest.raises(DynBenchError):
        build_backbone(name, in_shape, 2)


def test_wrong_input_shape_or_dtype_is_a_clear_error(family: str) -> None:
    model = small_backbone(family)
    good = model.example_input(2)
    with pytest.raises(DynBenchError, match="built for"):
        model(torch.cat([good, good], dim=-1))
    with pytest.raises(DynBenchError, match="built for"):
        model(good.float() if family == "textcnn" else good.long())


def test_text_rejects_token_ids_outside_the_vocabulary() -> None:
    model = small_backbone("textcnn")
    with pytest.raises(DynBenchError, match="vocab_size"):
        model(torch.full((1, 24), 50))


def test_text_logits_do_not_depend_on_padding_length() -> None:
    short, long = small_backbone("textcnn"), build_backbone("textcnn", (40,), 2, depth=2, width=16, embed_dim=8, vocab_size=50)
    long.load_state_dict(short.state_dict())
    long.eval()
    tokens = short.example_input(4, torch.Generator().manual_seed(1))
    padded = torch.cat([tokens, torch.zeros(4, 16, dtype=torch.long)], 1)
    torch.testing.assert_close(long(padded), short(tokens), atol=1e-5, rtol=0)
