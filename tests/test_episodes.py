"""Tests for the episode sampler (training/episodes.py): sizes, grouping and labels, disjoint support
and query, determinism per seed, the small-class fallbacks (shortfalls by class name), the errors (naming
the fold and the classes), and the test-time support draw."""

from __future__ import annotations

import numpy as np
import pytest

from merflow.training.episodes import Episode, EpisodeSampler, draw_support
from merflow.training.errors import DataError

# Three classes with 12, 8 and 10 samples, interleaved so that indices and labels differ.
LABELS = np.array([0, 1, 2] * 8 + [0, 0, 2, 0, 2, 0])


def _counts(labels) -> np.ndarray:
    return np.bincount(labels, minlength=3)


def test_episode_sizes_grouping_and_labels():
    episode = EpisodeSampler(LABELS, n_classes=3, k_shot=5, q_query=2, seed=0).episode()
    assert episode.support.shape == (15,) and episode.query.shape == (6,)
    assert np.array_equal(episode.support_labels, np.repeat([0, 1, 2], 5))
    assert np.array_equal(episode.query_labels, np.repeat([0, 1, 2], 2))
    assert np.array_equal(LABELS[episode.support], episode.support_labels)
    assert np.array_equal(LABELS[episode.query], episode.query_labels)


def test_support_and_query_are_distinct_and_disjoint():
    sampler = EpisodeSampler(LABELS, n_classes=3, k_shot=5, q_query=2, seed=1)
    for _ in range(50):
        episode = sampler.episode()
        everything = np.concatenate([episode.support, episode.query])
        assert len(np.unique(everything)) == len(everything)


def test_every_sample_serves_as_a_query_eventually():
    sampler = EpisodeSampler(LABELS, n_classes=3, k_shot=5, q_query=1, seed=0)
    queried = np.concatenate([sampler.episode().query for _ in range(200)])
    assert set(queried) == set(range(len(LABELS)))


def _sequence(seed: int, n: int = 5) -> list[Episode]:
    sampler = EpisodeSampler(LABELS, n_classes=3, k_shot=5, q_query=1, seed=seed)
    return [sampler.episode() for _ in range(n)]


def _same(a: list[Episode], b: list[Episode]) -> bool:
    return all(np.array_equal(x.support, y.support) and np.array_equal(x.query, y.query) for x, y in zip(a, b))


def test_deterministic_for_a_seed_and_different_across_seeds():
    assert _same(_sequence(seed=3), _sequence(seed=3))
    assert not _same(_sequence(seed=3), _sequence(seed=4))


def test_batches_of_episodes():
    batches = list(EpisodeSampler(LABELS, n_classes=3, seed=0).batches(n_batches=30, episodes_per_batch=4))
    assert len(batches) == 30 and all(len(batch) == 4 for batch in batches)
    assert all(isinstance(episode, Episode) for batch in batches for episode in batch)
    first_batch = batches[0]
    assert not _same(first_batch[:1], first_batch[1:2])  # each episode is a fresh draw


def test_small_class_query_first_then_support_from_the_rest():
    labels = np.array([0] * 10 + [1] * 3)  # class 1 has 3 < k_shot + q_query = 6 samples
    sampler = EpisodeSampler(labels, n_classes=2, k_shot=5, q_query=1, seed=0)
    for _ in range(20):
        episode = sampler.episode()
        small_support = episode.support[episode.support_labels == 1]
        small_query = episode.query[episode.query_labels == 1]
        assert len(small_support) == 5 and len(small_query) == 1
        assert small_query[0] not in small_support
        # the support holds every other sample of the class, repeated to fill K
        assert set(small_support) == set(np.flatnonzero(labels == 1)) - {small_query[0]}
        assert np.array_equal(labels[small_support], np.ones(5, dtype=int))


def test_a_class_of_one_sample_is_support_only_and_recorded_by_name():
    labels = np.array([0] * 6 + [1] + [2] * 6)  # class 1 ("contempt") has a single sample
    sampler = EpisodeSampler(labels, n_classes=3, k_shot=5, q_query=1, seed=0,
                             class_names=("anger", "contempt", "happiness"), context="fold loso-samm-006")
    assert sampler.shortfalls == {"contempt": {"samples": 1, "queries": 0, "distinct_shots": 1}}
    for _ in range(10):
        episode = sampler.episode()
        assert np.array_equal(episode.support[episode.support_labels == 1], [6] * 5)  # its prototype: that sample
        assert 1 not in episode.query_labels  # no query: it would have no support left
        assert np.array_equal(episode.query_labels, [0, 2])
        assert np.array_equal(labels[episode.query], episode.query_labels)


def test_a_class_without_samples_takes_no_part():
    labels = np.array([0] * 7 + [2] * 7)  # class 1 absent from this split
    episode = EpisodeSampler(labels, n_classes=3, k_shot=5, q_query=1, seed=0).episode()
    assert 1 not in episode.support_labels and 1 not in episode.query_labels
    assert np.array_equal(episode.support_labels, np.repeat([0, 2], 5))
    assert EpisodeSampler(labels, n_classes=3).shortfalls == {"class 1": {"samples": 0, "queries": 0,
                                                                          "distinct_shots": 0}}


@pytest.mark.parametrize("labels, why", [([0, 0, 0], "fewer than 2 classes"), ([0, 1], "no class has the 2 samples")],
                         ids=["one_class", "no_query"])
def test_nothing_to_learn_raises_naming_the_fold_and_the_classes(labels, why):
    with pytest.raises(DataError, match=why) as raised:
        EpisodeSampler(labels, n_classes=2, k_shot=5, q_query=1, class_names=("disgust", "tense"),
                       context="fold loso-casme-sub03")
    assert "fold loso-casme-sub03" in str(raised.value) and "disgust" in str(raised.value)
    assert "tense" in str(raised.value)


def test_labels_outside_the_classes_raise():
    with pytest.raises(ValueError, match=r"0\.\.2"):
        EpisodeSampler([0, 0, 1, 1, 2, 2, 3, 3], n_classes=3)


def test_draw_support_gives_k_per_class_or_all():
    labels = np.array([0] * 8 + [1] * 2 + [2] * 6)
    support = draw_support(labels, n_classes=4, k_shot=5, seed=0)  # class 3 has no samples
    assert np.array_equal(labels[support], np.repeat([0, 1, 2], [5, 2, 5]))
    assert len(np.unique(support)) == len(support)
    assert np.array_equal(support, draw_support(labels, n_classes=4, k_shot=5, seed=0))
    assert not np.array_equal(support, draw_support(labels, n_classes=4, k_shot=5, seed=1))
