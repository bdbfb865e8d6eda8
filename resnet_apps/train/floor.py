"""The baseline floor: logistic regression on trivial features, fitted and scored on the model's own split.

A number means little without the score a trivial model reaches on the same images. The floor reads every
image exactly as the model's evaluation does (``recipe_dataset(train=False)``: same ``Preprocessing``, same
normalisation, no augmentation) and reduces it to trivial features:

- classification: per band mean, std and the 5/25/50/75/95th percentiles over the valid pixels
  (7 numbers per band);
- segmentation: the band values of single pixels (a seeded subsample of ``PIXEL_BUDGET`` labelled pixels
  over the training images; every valid pixel of the evaluated images is predicted).

scikit-learn's ``LogisticRegression`` (standardised features; multinomial for multiclass and segmentation,
one model per label for multi-label, binary otherwise) is fitted on train for each C of ``C_GRID``; the C
with the lowest validation log-loss is kept. Memory and time are bounded: train and val are featurised from
at most ``MAX_IMAGES`` images each (a seeded subsample beyond); the evaluated split is featurised whole,
because the paired difference needs every sample the model was scored on. Features are 7 numbers per band
per image, so memory is that of the feature matrix; segmentation predicts one image at a time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from resnet_apps.constants import IGNORE_INDEX

C_GRID = (0.01, 0.1, 1.0, 10.0)
PERCENTILES = (5, 25, 50, 75, 95)
MAX_IMAGES = 10_000  # train / val images featurised at most (a seeded subsample beyond)
PIXEL_BUDGET = 200_000  # segmentation: labelled training (and validation) pixels sampled in all
FEATURES = "per band mean, std and 5/25/50/75/95th percentiles of each preprocessed image"
PIXEL_FEATURES = "the preprocessed band values of single pixels"

Arrays = Callable[[int], dict[str, Any]]  # index -> {"image" [C, H, W], "valid" [H, W], "mask"?, "label"?}


def image_features(image: np.ndarray, valid: np.ndarray | None = None) -> np.ndarray:
    """Trivial features of one image: per band mean, std and ``PERCENTILES`` over its valid pixels.

    Args:
        image: [C, H, W] preprocessed pixels.
        valid: [H, W] bool; None: every pixel.

    Returns:
        [C * 7] float64: band 0's (mean, std, p5, p25, p50, p75, p95), then band 1's, ...
    """
    c = image.shape[0]
    flat = np.asarray(image, dtype=np.float64).reshape(c, -1)
    if valid is not None:
        keep = np.asarray(valid, dtype=bool).reshape(-1)
        flat = flat[:, keep] if keep.any() else flat
    pct = np.percentile(flat, PERCENTILES, axis=1).T  # [C, 5]
    return np.concatenate([flat.mean(1)[:, None], flat.std(1)[:, None], pct], axis=1).reshape(-1)


def subsample(n: int, limit: int, seed: int) -> np.ndarray:
    """Sorted indices of at most ``limit`` of ``n`` items, seeded (all of them when n <= limit)."""
    if n <= limit:
        return np.arange(n)
    return np.sort(np.random.default_rng(seed).choice(n, size=limit, replace=False))


def classification_features(sample: Arrays, indices: Iterable[int]) -> tuple[np.ndarray, np.ndarray]:
    """(features [N, F], targets [N] int | [N, K] float with NaN unknown) of the given samples."""
    rows, targets = [], []
    for i in indices:
        s = sample(int(i))
        rows.append(image_features(np.asarray(s["image"]), np.asarray(s["valid"])))
        targets.append(np.asarray(s["label"], dtype=float))
    return np.stack(rows), np.stack(targets)


def pixel_features(
    sample: Arrays, indices: Sequence[int] | np.ndarray, budget: int, seed: int
) -> tuple[np.ndarray, np.ndarray]:
    """(pixels [P, C], classes [P]) sampled evenly over the images: ``budget // len(indices)`` each, seeded."""
    rng = np.random.default_rng(seed)
    per_image = max(1, budget // max(len(indices), 1))
    xs, ys = [], []
    for i in indices:
        s = sample(int(i))
        image, mask = np.asarray(s["image"]), np.asarray(s["mask"])
        keep = np.flatnonzero((mask != IGNORE_INDEX).reshape(-1) & np.asarray(s["valid"]).reshape(-1))
        if keep.size == 0:
            continue
        pick = keep if keep.size <= per_image else rng.choice(keep, size=per_image, replace=False)
        xs.append(image.reshape(image.shape[0], -1)[:, pick].T)
        ys.append(mask.reshape(-1)[pick])
    if not xs:
        return np.zeros((0, 0)), np.zeros(0, dtype=np.int64)
    return np.concatenate(xs).astype(np.float64), np.concatenate(ys).astype(np.int64)


@dataclass
class Floor:
    """A fitted floor: one pipeline (binary / multiclass / segmentation) or one per label (multi-label).

    Attributes:
        models: fitted scikit-learn pipelines; a label with one class in train has None (its prevalence).
        constants: per model, the probability used when it is None.
        num_classes: K (columns of ``predict_proba``'s output for multiclass / multi-label / segmentation).
        mode: binary | multiclass | multilabel | segmentation.
        c: the chosen inverse regularisation strength.
        val_log_loss: validation log-loss of the chosen C (NaN when validation had no usable row).
    """

    models: list[Any]
    constants: list[float]
    num_classes: int
    mode: str
    c: float
    val_log_loss: float

    def predict_proba(self, x: np.ndarray) -> np.ndarray:
        """[N] positive-class probability (binary), [N, K] class probabilities or per-label probabilities."""
        if self.mode == "multilabel":
            cols = [
                np.full(len(x), k) if m is None else m.predict_proba(x)[:, 1]
                for m, k in zip(self.models, self.constants, strict=True)
            ]
            return np.stack(cols, axis=1)
        model = self.models[0]
        prob = np.zeros((len(x), max(self.num_classes, 2)))
        if model is None:  # one class in train
            prob[:, int(self.constants[0])] = 1.0
        else:
            prob[:, model.classes_.astype(int)] = model.predict_proba(x)
        return prob[:, 1] if self.mode == "binary" else prob


def fit_floor(
    x_train: np.ndarray,
    y_train: np.ndarray,
    x_val: np.ndarray,
    y_val: np.ndarray,
    mode: str,
    num_classes: int,
    grid: Sequence[float] = C_GRID,
) -> Floor:
    """Fit standardised logistic regression on train for each C of ``grid``; keep the best on validation.

    Args:
        x_train / x_val: [N, F] features.
        y_train / y_val: [N] class index (binary: 0/1) or [N, K] 0/1 with NaN unknown (multi-label).
        mode: binary | multiclass | multilabel | segmentation.
        num_classes: K.
    """
    best: Floor | None = None
    for c in grid:
        if mode == "multilabel":
            models, constants = [], []
            for k in range(y_train.shape[1]):
                known = ~np.isnan(y_train[:, k])
                m, const = _fit_one(x_train[known], y_train[known, k].astype(int), c)
                models.append(m)
                constants.append(float(np.mean(y_train[known, k])) if m is None and known.any() else const)
            floor = Floor(models, constants, num_classes, mode, c, float("nan"))
        else:
            m, const = _fit_one(x_train, y_train.astype(int), c)
            floor = Floor([m], [const], num_classes, mode, c, float("nan"))
        floor.val_log_loss = _log_loss(floor, x_val, y_val)
        if best is None or (floor.val_log_loss < best.val_log_loss) or np.isnan(best.val_log_loss):
            best = floor
        if all(m is None for m in floor.models):
            break  # nothing to fit: C changes nothing
    assert best is not None
    return best


def _fit_one(x: np.ndarray, y: np.ndarray, c: float) -> tuple[Any, float]:
    """A fitted pipeline, or (None, the only class) when train holds a single class."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    classes = np.unique(y)
    if len(classes) < 2:
        return None, float(classes[0]) if len(classes) else 0.0
    model = make_pipeline(StandardScaler(), LogisticRegression(C=c, max_iter=1000))
    model.fit(x, y)
    return model, 0.0


def _log_loss(floor: Floor, x: np.ndarray, y: np.ndarray) -> float:
    """Mean validation log-loss (multi-label: over known labels); NaN without a usable row."""
    if len(x) == 0:
        return float("nan")
    eps = 1e-12
    prob = floor.predict_proba(x)
    if floor.mode == "multilabel":
        known = ~np.isnan(y)
        p = np.clip(prob[known], eps, 1 - eps)
        t = y[known]
        return float(-np.mean(t * np.log(p) + (1 - t) * np.log(1 - p))) if t.size else float("nan")
    if floor.mode == "binary":
        p = np.clip(prob, eps, 1 - eps)
        return float(-np.mean(y * np.log(p) + (1 - y) * np.log(1 - p)))
    labels = y.astype(int)
    inside = labels < prob.shape[1]
    if not inside.any():
        return float("nan")
    picked = prob[np.flatnonzero(inside), labels[inside]]
    return float(-np.mean(np.log(np.clip(picked, eps, 1.0))))


def predict_map(floor: Floor, image: np.ndarray) -> np.ndarray:
    """[H, W] class index of every pixel of a [C, H, W] image (segmentation floor)."""
    c, h, w = image.shape
    prob = floor.predict_proba(np.asarray(image, dtype=np.float64).reshape(c, -1).T)
    return np.asarray(prob.argmax(1)).reshape(h, w)
