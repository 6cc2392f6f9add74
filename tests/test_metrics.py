"""Segmentation metrics against a confusion matrix counted by hand."""
from __future__ import annotations

import math

import torch

from bench.measure.metrics import confusion_matrix, correct_per_sample, iou_per_class, mean_iou, pixel_accuracy

# 3 classes; targets with two ignored pixels (255)
TARGETS = torch.tensor([[0, 0, 1, 1], [2, 2, 255, 255], [0, 1, 2, 0]])
PREDICTIONS = torch.tensor([[0, 1, 1, 1], [2, 0, 1, 2], [0, 1, 1, 0]])
# rows = true, columns = predicted, counted by hand over the 10 non-ignored pixels
HAND = torch.tensor([[3, 1, 0],
                     [0, 3, 0],
                     [1, 1, 1]])


def test_confusion_matrix_matches_hand_count_and_skips_ignored_pixels():
    assert torch.equal(confusion_matrix(PREDICTIONS, TARGETS, 3), HAND)


def test_iou_miou_and_pixel_accuracy():
    # IoU = TP / (TP + FP + FN): class 0: 3/(3+1+1), class 1: 3/(3+2+0), class 2: 1/(1+0+2)
    assert torch.allclose(iou_per_class(HAND), torch.tensor([3 / 5, 3 / 5, 1 / 3], dtype=torch.float64))
    assert math.isclose(mean_iou(HAND), (3 / 5 + 3 / 5 + 1 / 3) / 3)
    assert math.isclose(pixel_accuracy(HAND), 7 / 10)


def test_absent_class_is_left_out_of_the_mean():
    confusion = torch.tensor([[2, 0, 0], [0, 0, 0], [0, 0, 1]])
    assert math.isclose(mean_iou(confusion), 1.0)


def test_correct_per_sample_for_classification_and_segmentation():
    logits = torch.tensor([[2.0, 1.0], [0.0, 3.0]])
    assert correct_per_sample(logits, torch.tensor([0, 0])).tolist() == [1.0, 0.0]
    seg_logits = torch.nn.functional.one_hot(PREDICTIONS, 3).permute(0, 2, 1).float().unsqueeze(-1)  # [N,C,4,1]
    per_sample = correct_per_sample(seg_logits, TARGETS.unsqueeze(-1))
    assert torch.allclose(per_sample, torch.tensor([3 / 4, 1 / 2, 3 / 4]))
