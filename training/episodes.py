"""Few-shot episodes: which samples form the support and query sets of meta-training, and the
support set drawn at test time.

One concern: index sampling. Everything here returns positions into the caller's list of labels;
loading features and computing losses belong to the trainer.

Episodes are N-way with N = every class (as in Meta-MMFNet's code), K-shot, Q queries per class.
Micro-expression classes are small (a fold can hold a handful of samples of one emotion), so a class
with fewer than K + Q samples still takes part: its Q queries are drawn first, without replacement,
and its support is every remaining sample once, topped up to K with draws (with replacement) from
those same remaining samples. A query is thus never in its own episode's support. A class with
fewer than Q + 1 samples cannot give both and raises ``ValueError``.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

__all__ = ["Episode", "EpisodeSampler", "draw_support"]


@dataclass(frozen=True)
class Episode:
    """One episode's dataset indices and class labels, each set grouped by class in class order."""

    support: np.ndarray  # n_way * k_shot indices
    support_labels: np.ndarray  # the dataset's class index of each support item
    query: np.ndarray  # n_way * q_query indices
    query_labels: np.ndarray


def _indices_by_class(labels: Sequence[int], n_classes: int) -> list[np.ndarray]:
    labels = np.asarray(labels, dtype=np.int64)
    if labels.ndim != 1:
        raise ValueError(f"labels must be one-dimensional; got shape {labels.shape}")
    outside = labels[(labels < 0) | (labels >= n_classes)]
    if outside.size:
        raise ValueError(f"labels must lie in 0..{n_classes - 1}; found {sorted(set(outside.tolist()))}")
    return [np.flatnonzero(labels == c) for c in range(n_classes)]


class EpisodeSampler:
    """N-way (all ``n_classes``) K-shot Q-query episodes over a labelled list; deterministic for a seed."""

    def __init__(self, labels: Sequence[int], n_classes: int, k_shot: int = 5, q_query: int = 1, seed: int = 0):
        if n_classes < 1 or k_shot < 1 or q_query < 1:
            raise ValueError(f"n_classes, k_shot and q_query must be at least 1; got {n_classes}, {k_shot}, {q_query}")
        self.n_classes, self.k_shot, self.q_query = n_classes, k_shot, q_query
        self._by_class = _indices_by_class(labels, n_classes)
        too_small = {c: len(idx) for c, idx in enumerate(self._by_class) if len(idx) < q_query + 1}
        if too_small:
            detail = ", ".join(f"class {c} has {n}" for c, n in too_small.items())
            raise ValueError(f"every class needs at least {q_query + 1} samples ({q_query} query + 1 support); "
                             f"{detail}")
        self._rng = np.random.default_rng(seed)

    def _draw_class(self, members: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
        """(support, query) indices of one class for one episode."""
        if len(members) >= self.k_shot + self.q_query:
            drawn = self._rng.choice(members, self.k_shot + self.q_query, replace=False)
            return drawn[: self.k_shot], drawn[self.k_shot:]
        shuffled = self._rng.permutation(members)
        query, rest = shuffled[: self.q_query], shuffled[self.q_query:]
        top_up = self._rng.choice(rest, self.k_shot - len(rest), replace=True)
        return np.concatenate([rest, top_up]), query

    def episode(self) -> Episode:
        drawn = [self._draw_class(members) for members in self._by_class]
        classes = np.arange(self.n_classes)
        return Episode(support=np.concatenate([s for s, _ in drawn]),
                       support_labels=np.repeat(classes, self.k_shot),
                       query=np.concatenate([q for _, q in drawn]),
                       query_labels=np.repeat(classes, self.q_query))

    def batches(self, n_batches: int, episodes_per_batch: int) -> Iterator[list[Episode]]:
        """``n_batches`` lists of ``episodes_per_batch`` episodes (the paper's code: 30 x 4 per epoch)."""
        for _ in range(n_batches):
            yield [self.episode() for _ in range(episodes_per_batch)]


def draw_support(labels: Sequence[int], n_classes: int, k_shot: int, seed: int) -> np.ndarray:
    """Test-time support: ``k_shot`` distinct indices per class, or all of a class's indices if it has
    fewer; grouped by class in class order. A class with no samples contributes nothing (its
    prototype is then zero, see ``model.PrototypeClassifier.prototypes``)."""
    if k_shot < 1:
        raise ValueError(f"k_shot must be at least 1; got {k_shot}")
    rng = np.random.default_rng(seed)
    chosen = [rng.choice(members, min(k_shot, len(members)), replace=False)
              for members in _indices_by_class(labels, n_classes)]
    return np.concatenate(chosen).astype(np.int64)
