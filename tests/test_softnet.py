"""SOFTNet in plain torch (training/spotting/softnet.py): its shape, its input scaling, and that it learns."""

import numpy as np
import torch

from merflow.configs.spotting import SpotConfig
from merflow.training.spotting import softnet


def test_the_network_has_softnets_layers_and_size():
    model = softnet.SoftNet(42)
    # Keras's SOFTNet: three Conv2D (3, 5, 8 filters of 5 x 5 on one channel), Dense 400 on 16 x 7 x 7, Dense 1.
    assert sum(p.numel() for p in model.parameters()) == (3 + 5 + 8) * 26 + (16 * 7 * 7 + 1) * 400 + 401
    assert model(torch.zeros(2, 3, 42, 42)).shape == (2,)


def test_each_sample_channel_is_scaled_to_zero_one():
    batch = np.stack([np.stack([np.full((4, 4), 3.0), np.arange(16.0).reshape(4, 4), -np.ones((4, 4))])])
    scaled = softnet.normalize(batch)
    assert scaled[0, 0].max() == 0.0                 # a constant channel is 0
    assert scaled[0, 1].min() == 0.0 and scaled[0, 1].max() == 1.0


def test_training_scores_the_positives_higher():
    rng = np.random.default_rng(0)
    x = rng.normal(0, 0.1, (120, 3, 12, 12)).astype(np.float16)
    y = (rng.random(120) < 0.3).astype(np.float32)
    x[y > 0, :, 2:6, 2:6] += 2.0                      # a positive moves in one place, in every channel
    model = softnet.train(x, y, SpotConfig(epochs=6, batch_size=16, lr=0.05, augment_micro=False), micro=True, seed=0)
    scores = softnet.scores(model, x)
    assert scores[y > 0].mean() > scores[y == 0].mean() + 0.3


def test_negatives_are_thinned_and_micro_positives_augmented():
    rng = np.random.default_rng(0)
    x = np.zeros((100, 3, 6, 6), np.float16)
    y = np.zeros(100, np.float32)
    y[:10] = 1
    images, labels = softnet.training_set(x, y, SpotConfig(), micro=True, rng=rng)
    # SOFTNet removes int(90 / 2) = 45 negatives and adds 3 copies of each of the 10 positives.
    assert (labels == 0).sum() == 45 and (labels == 1).sum() == 40
    _, labels = softnet.training_set(x, y, SpotConfig(), micro=False, rng=rng)
    assert (labels == 1).sum() == 10
