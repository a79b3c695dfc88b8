"""The training loops' pure parts (training/loops.py): α's choice on validation scores."""

import numpy as np

from merflow.training.loops import choose_alpha


def test_alpha_is_chosen_on_validation_scores_only():
    micro = np.array([[2.0, 0.0], [0.0, 1.0], [1.0, 0.0]])
    macro = np.array([[0.0, 1.0], [0.0, 1.0], [0.0, 3.0]])
    labels = np.array([0, 1, 1])
    # α = 0: predictions 0, 1, 0 (2/3); α >= 0.5: the third flips to class 1 (3/3), the first stays until α = 2.
    assert choose_alpha(micro, macro, labels, (0.0, 0.5, 1.0)) == 0.5
    assert choose_alpha(micro, macro, np.array([], int), (0.0, 0.5)) == 1.0


def test_alpha_by_loss_prefers_the_confident_fusion_among_equally_accurate_ones():
    micro = np.array([[1.0, 0.0], [0.0, 1.0]])
    macro = np.array([[3.0, 0.0], [0.0, 3.0]])  # agrees with micro, more sharply
    labels = np.array([0, 1])
    assert choose_alpha(micro, macro, labels, (0.0, 0.5, 1.0)) == 0.0  # accuracy ties: the least fusion
    assert choose_alpha(micro, macro, labels, (0.0, 0.5, 1.0), by="loss") == 1.0
