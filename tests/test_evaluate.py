"""bench.train.evaluate reports accuracy for classification and miou + pixel_accuracy for segmentation."""
from __future__ import annotations

import torch
from torch import nn

from bench.data import BatchPipeline
from bench.data.dataset import DatasetPlugin, TensorSplit
from bench.train import evaluate


class Segmentation(DatasetPlugin):
    name = "tiny_segmentation"
    task, primary_metric, num_classes = "segmentation", "miou", 2
    mean, std = (0.0,), (1.0,)


class Threshold(nn.Module):
    """Predicts class 1 where the pixel is bright: logits [N, 2, H, W]."""

    def __init__(self) -> None:
        super().__init__()
        self.scale = nn.Parameter(torch.ones(()))

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        return torch.cat([0.5 - x, x - 0.5], dim=1) * self.scale


def test_segmentation_reports_miou_and_pixel_accuracy():
    images = torch.tensor([[[[0, 255], [255, 0]]]], dtype=torch.uint8)  # [1,1,2,2]
    masks = torch.tensor([[[0, 1], [0, 255]]], dtype=torch.uint8)  # one wrong pixel, one ignored
    metrics, _ = evaluate(Threshold(), TensorSplit(images, masks), BatchPipeline(Segmentation(), torch.device("cpu")))
    # confusion [[1, 1], [0, 1]]: IoU 1/2 and 1/2, pixel accuracy 2/3
    assert set(metrics) == {"miou", "pixel_accuracy", "loss"}
    assert abs(metrics["miou"] - 0.5) < 1e-9 and abs(metrics["pixel_accuracy"] - 2 / 3) < 1e-9
