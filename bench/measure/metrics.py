"""Task metrics: accuracy for classification; confusion matrix, mIoU and pixel accuracy for segmentation."""
from __future__ import annotations

import torch

IGNORE_INDEX = 255  # label of pixels that no metric or loss counts (Cityscapes "void")


def confusion_matrix(predictions: torch.Tensor, targets: torch.Tensor, num_classes: int,
                     ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """int64 [C, C] counts, rows = true class, columns = predicted class; `ignore_index` targets are left out."""
    targets, predictions = targets.reshape(-1).long(), predictions.reshape(-1).long()
    keep = targets != ignore_index
    index = targets[keep] * num_classes + predictions[keep]
    return torch.bincount(index, minlength=num_classes * num_classes).view(num_classes, num_classes)


def iou_per_class(confusion: torch.Tensor) -> torch.Tensor:
    """Intersection over union per class, TP / (TP + FP + FN); NaN for a class absent from targets and
    predictions alike."""
    confusion = confusion.double()
    true_positive = confusion.diagonal()
    union = confusion.sum(0) + confusion.sum(1) - true_positive
    return torch.where(union > 0, true_positive / union.clamp(min=1), torch.full_like(union, float("nan")))


def mean_iou(confusion: torch.Tensor) -> float:
    """Mean IoU (fraction 0-1) over the classes that occur in targets or predictions (the Cityscapes rule
    averages over all 19 classes of the full val set, where every class occurs)."""
    return float(iou_per_class(confusion).nanmean())


def pixel_accuracy(confusion: torch.Tensor) -> float:
    """Fraction of counted (non-ignored) pixels predicted correctly."""
    return float(confusion.diagonal().sum().double() / confusion.sum().clamp(min=1))


def correct_per_sample(logits: torch.Tensor, targets: torch.Tensor, ignore_index: int = IGNORE_INDEX) -> torch.Tensor:
    """Per sample: 1/0 for classification; for segmentation the fraction of its counted pixels that are right."""
    hits = logits.argmax(1) == targets
    if hits.dim() == 1:
        return hits.float()
    counted = (targets != ignore_index).flatten(1)
    return (hits.flatten(1) & counted).sum(1) / counted.sum(1).clamp(min=1)
