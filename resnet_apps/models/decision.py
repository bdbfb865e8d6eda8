"""Logits -> probabilities -> labels at the checkpoint's operating point (shared by folders, scenes, Grad-CAM)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch


@dataclass(frozen=True)
class Decision:
    """How a checkpoint turns its K outputs into a label.

    Attributes:
        classes: class names (for one binary logit: [negative, positive]).
        threshold: operating threshold on the positive probability (binary) or each class (multi-label).
        positive_index: index of the positive class among ``classes`` (binary only).
        multilabel: K independent sigmoid outputs.
        num_outputs: K, the model's output width.
    """

    classes: tuple[str, ...]
    threshold: float
    positive_index: int
    multilabel: bool
    num_outputs: int

    @classmethod
    def from_meta(cls, meta: Mapping[str, Any]) -> Decision:
        model = meta.get("model", {})
        num_outputs = int(model.get("num_classes", len(meta.get("classes") or []) or 2))
        classes = tuple(str(c) for c in (meta.get("classes") or []))
        if not classes:
            classes = tuple(f"class{k}" for k in range(max(num_outputs, 2)))
        positive = meta.get("positive_class")
        positive_index = classes.index(positive) if positive in classes else len(classes) - 1
        threshold = meta.get("operating_threshold")
        return cls(
            classes,
            0.5 if threshold is None else float(threshold),
            positive_index,
            bool(model.get("multilabel", False)),
            num_outputs,
        )

    @property
    def binary(self) -> bool:
        return not self.multilabel and len(self.classes) == 2

    def probabilities(self, logits: torch.Tensor) -> torch.Tensor:
        """[B, K] logits -> [B, K] probabilities (sigmoid for one output or multi-label, else softmax)."""
        if self.num_outputs == 1 or self.multilabel:
            return torch.sigmoid(logits.float())
        return torch.softmax(logits.float(), dim=1)

    def columns(self) -> list[str]:
        """Names of the probability columns: one per output (one binary logit: the positive class)."""
        if self.num_outputs == 1:
            return [self.classes[self.positive_index]]
        return list(self.classes[: self.num_outputs])

    def positive_probability(self, prob: torch.Tensor) -> torch.Tensor:
        """[B, K] -> [B] probability of the positive class (binary models)."""
        return prob[:, 0] if self.num_outputs == 1 else prob[:, self.positive_index]

    def labels(self, prob: torch.Tensor) -> list[str]:
        """[B, K] probabilities -> one label per row (multi-label: names joined by "|", "" for none)."""
        if self.multilabel:
            return [
                "|".join(c for c, p in zip(self.classes, row.tolist(), strict=True) if p >= self.threshold)
                for row in prob
            ]
        if self.binary:
            pos = self.positive_probability(prob)
            negative = 1 - self.positive_index
            return [
                self.classes[self.positive_index if p >= self.threshold else negative] for p in pos.tolist()
            ]
        return [self.classes[int(k)] for k in prob.argmax(dim=1).tolist()]

    def label_indices(self, prob: torch.Tensor) -> list[int]:
        """Like :meth:`labels` as class indices (multi-label: the most probable class)."""
        if self.binary:
            pos = self.positive_probability(prob)
            return [
                self.positive_index if p >= self.threshold else 1 - self.positive_index for p in pos.tolist()
            ]
        return prob.argmax(dim=1).tolist()

    def target_index(self, label_index: int) -> int:
        """Output index to explain for a class index (one binary logit: output 0 either way)."""
        return 0 if self.num_outputs == 1 else label_index


def format_probabilities(prob: Sequence[float]) -> list[str]:
    """Fixed 6-decimal text so that CSVs diff cleanly."""
    return [f"{p:.6f}" for p in prob]
