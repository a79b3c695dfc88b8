"""Few-shot episodes: which samples form the support and query sets of meta-training, and the
support set drawn at test time.

One concern: index sampling. Everything here returns positions into the caller's list of labels;
loading features and computing losses belong to the trainer.

Episodes are N-way with N = every class (as in Meta-MMFNet's code), K-shot, Q queries per class.
Micro-expression classes are small (a fold can hold a handful of samples of one emotion, and none of
a rare class such as SAMM's contempt), so every class takes part with what it has:

- K + Q samples or more: K shots and Q queries, drawn without replacement;
- fewer, but at least 2: its queries are drawn first, min(Q, n - 1) of them, without replacement,
  and its support is every remaining sample once, topped up to K with draws (with replacement) from
  those same remaining samples. A query is thus never in its own episode's support;
- one sample: no query; the sample is its whole support (repeated K times), so the class still has a
  prototype that the other classes' queries are told apart from;
- none: no support and no query (its prototype is zero, see ``model.PrototypeClassifier``).

``EpisodeSampler.shortfalls`` records, by class name, every class that got fewer than K distinct
shots or Q queries. Only where nothing can be learnt (fewer than two classes with samples, or no
class with the 2 samples a query needs) does it raise ``DataError``, naming the classes (and the
fold, given as ``context``) by name.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from merflow.training.errors import DataError

__all__ = ["Episode", "EpisodeSampler", "draw_support"]


@dataclass(frozen=True)
class Episode:
    """One episode's dataset indices and class labels, each set grouped by class in class order."""

    support: np.ndarray  # k_shot indices per class with samples (n_way * k_shot when none is short)
    support_labels: np.ndarray  # the dataset's class index of each support item
    query: np.ndarray  # up to q_query indices per class (n_way * q_query when none is short)
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
    """N-way (all ``n_classes``) K-shot Q-query episodes over a labelled list; deterministic for a seed.

    ``class_names`` (default "class 0", ...) and ``context`` (e.g. "fold loso-casme2-sub01") name
    what a message or a shortfall is about.
    """

    def __init__(self, labels: Sequence[int], n_classes: int, k_shot: int = 5, q_query: int = 1, seed: int = 0,
                 class_names: Sequence[str] | None = None, context: str = ""):
        if n_classes < 1 or k_shot < 1 or q_query < 1:
            raise ValueError(f"n_classes, k_shot and q_query must be at least 1; got {n_classes}, {k_shot}, {q_query}")
        if class_names is not None and len(class_names) != n_classes:
            raise ValueError(f"{len(class_names)} class names for {n_classes} classes")
        self.n_classes, self.k_shot, self.q_query = n_classes, k_shot, q_query
        self.class_names = (tuple(class_names) if class_names is not None
                            else tuple(f"class {c}" for c in range(n_classes)))
        self._by_class = _indices_by_class(labels, n_classes)
        counts = [len(members) for members in self._by_class]
        # Queries a class can give and keep one sample for its support.
        self._queries = [min(q_query, max(n - 1, 0)) for n in counts]
        problem = episode_problem(counts, self.class_names)
        if problem:
            raise DataError(f"{context + ': ' if context else ''}{problem}")
        self.shortfalls = {
            self.class_names[c]: {"samples": n, "queries": self._queries[c],
                                  "distinct_shots": min(k_shot, n - self._queries[c])}
            for c, n in enumerate(counts) if n < k_shot + q_query}
        self._rng = np.random.default_rng(seed)

    def _draw_class(self, members: np.ndarray, queries: int) -> tuple[np.ndarray, np.ndarray]:
        """(support, query) indices of one class for one episode."""
        if not len(members):
            return members, members
        if len(members) >= self.k_shot + queries:
            drawn = self._rng.choice(members, self.k_shot + queries, replace=False)
            return drawn[: self.k_shot], drawn[self.k_shot:]
        shuffled = self._rng.permutation(members)
        query, rest = shuffled[:queries], shuffled[queries:]
        top_up = self._rng.choice(rest, self.k_shot - len(rest), replace=True)
        return np.concatenate([rest, top_up]), query

    def episode(self) -> Episode:
        """One N-way episode: each class's support shots and queries, as sample indices and class labels."""
        drawn = [self._draw_class(members, queries) for members, queries in zip(self._by_class, self._queries)]
        classes = np.arange(self.n_classes)
        return Episode(support=np.concatenate([s for s, _ in drawn]).astype(np.int64),
                       support_labels=np.repeat(classes, [len(s) for s, _ in drawn]),
                       query=np.concatenate([q for _, q in drawn]).astype(np.int64),
                       query_labels=np.repeat(classes, [len(q) for _, q in drawn]))

    def batches(self, n_batches: int, episodes_per_batch: int) -> Iterator[list[Episode]]:
        """``n_batches`` lists of ``episodes_per_batch`` episodes (the paper's code: 30 x 4 per epoch)."""
        for _ in range(n_batches):
            yield [self.episode() for _ in range(episodes_per_batch)]


def episode_problem(counts: Sequence[int], class_names: Sequence[str]) -> str | None:
    """Why no episode can teach anything with these per-class sample counts, or None if one can:
    prototypes need two classes with samples, and a loss needs one class with a query (2 samples)."""
    described = ", ".join(f"{name} {n}" for name, n in zip(class_names, counts))
    if sum(n > 0 for n in counts) < 2:
        return f"fewer than 2 classes have samples to train on ({described})"
    if not any(n >= 2 for n in counts):
        return f"no class has the 2 samples an episode needs for 1 query + 1 shot ({described})"
    return None


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
