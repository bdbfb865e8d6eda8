"""Logits -> probabilities -> labels at the checkpoint's operating point (shared by folders, scenes, Grad-CAM)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from typing import Any

import torch

from resnet_apps.models.meta import CheckpointMeta


@dataclass(frozen=True)
class Decision:
    """How a checkpoint turns its K outputs into a label.

    Attributes:
        classes: class names (for one binary logit: [negative, positive]).
        thresholds: operating thresholds: one per class (multi-label, applied to each class's sigmoid), else
            one, on the positive probability (binary; unused by multi-class argmax).
        positive_index: index of the positive class among ``classes`` (binary only).
        multilabel: K independent sigmoid outputs.
        num_outputs: K, the model's output width.
    """

    classes: tuple[str, ...]
    thresholds: tuple[float, ...]
    positive_index: int
    multilabel: bool
    num_outputs: int

    @classmethod
    def build(
        cls,
        classes: Sequence[str],
        threshold: float | Sequence[float] | None = None,
        positive_class: str | None = None,
        num_outputs: int | None = None,
        multilabel: bool = False,
    ) -> Decision:
        """A decision rule from its parts.

        Args:
            classes: class names (one binary logit: [negative, positive]).
            threshold: None (0.5), one number, or one per class (multi-label).
            positive_class: the binary positive class (default: the last class).
            num_outputs: K (default: one per class).
            multilabel: K independent sigmoid outputs.

        Raises:
            ValueError: a per-class threshold list whose length is not the number of classes, or a list
                for a model that is not multi-label.
        """
        names = tuple(classes)
        k = len(names) if num_outputs is None else num_outputs
        if threshold is None or isinstance(threshold, int | float):
            value = 0.5 if threshold is None else float(threshold)
            thresholds = (value,) * len(names) if multilabel else (value,)
        else:
            thresholds = tuple(float(t) for t in threshold)
            if not multilabel or len(thresholds) != len(names):
                raise ValueError(
                    f"{len(thresholds)} thresholds for classes {list(names)} "
                    f"({'multi-label' if multilabel else 'not multi-label'}): give one per class, multi-label only"
                )
        positive_index = names.index(positive_class) if positive_class in names else len(names) - 1
        return cls(names, thresholds, positive_index, multilabel, k)

    @classmethod
    def from_meta(cls, meta: CheckpointMeta | Mapping[str, Any]) -> Decision:
        """The rule a checkpoint's metadata records (plain dicts are checked by :class:`CheckpointMeta`)."""
        checked = CheckpointMeta.coerce(meta)
        return cls.build(
            checked.classes,
            checked.thresholds() if checked.model.multilabel else checked.operating_threshold,
            checked.positive_class,
            checked.model.num_classes,
            checked.model.multilabel,
        )

    @property
    def threshold(self) -> float:
        """The binary operating threshold (multi-label models have one per class: :attr:`thresholds`)."""
        return self.thresholds[0]

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
                "|".join(
                    c for c, p, t in zip(self.classes, row.tolist(), self.thresholds, strict=True) if p >= t
                )
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
