"""Tests for the model (training/model.py): input composition in both layouts, the linear classifier,
prototypes and cosine logits checked by hand, the learnable temperature, and that episodic training
of the prototype classifier learns an easy synthetic problem."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
import torch.nn.functional as F

from merflow.training.encoders import build_encoder
from merflow.training.episodes import EpisodeSampler, draw_support
from merflow.training.model import (
    INPUT_LAYOUTS,
    LinearClassifier,
    PrototypeClassifier,
    compose_input,
    input_channels,
)


def _features(batch: int = 2, size: int = 8, seed: int = 0) -> tuple[torch.Tensor, torch.Tensor]:
    generator = torch.Generator().manual_seed(seed)
    diff = torch.randn(batch, 3, size, size, generator=generator)
    return diff, torch.randn(batch, 4, size, size, generator=generator)


@pytest.mark.parametrize("flow_channels", [(0, 1, 2), (0, 1, 3)], ids=["uv_magnitude", "uv_strain"])
def test_stack_height_puts_difference_on_top_and_flow_below(flow_channels):
    diff, flow = _features(size=8)
    image = compose_input(diff, flow, "stack_height", flow_channels)
    assert image.shape == (2, 3, 16, 8)
    assert torch.equal(image[:, :, :8], diff)
    assert torch.equal(image[:, :, 8:], flow[:, list(flow_channels)])


def test_channels_layout_stacks_channels():
    diff, flow = _features(size=8)
    image = compose_input(diff, flow, "channels", (0, 1, 2, 3))
    assert image.shape == (2, 7, 8, 8)
    assert torch.equal(image[:, :3], diff) and torch.equal(image[:, 3:], flow)
    assert torch.equal(compose_input(diff, flow, "channels", (3,))[:, 3], flow[:, 3])


def test_numpy_arrays_are_converted():
    diff, flow = _features()
    image = compose_input(diff.numpy().astype(np.float64), flow.numpy())
    assert isinstance(image, torch.Tensor) and image.dtype == torch.float32
    assert torch.allclose(image, compose_input(diff, flow))


@pytest.mark.parametrize("layout, flow_channels", [("stack_height", (0, 1)), ("stack_height", (0, 1, 2, 3)),
                                                   ("channels", (4,)), ("channels", ()), ("side_by_side", (0, 1, 2))])
def test_invalid_layout_or_flow_selection_raises(layout, flow_channels):
    diff, flow = _features()
    with pytest.raises(ValueError):
        compose_input(diff, flow, layout, flow_channels)
    with pytest.raises(ValueError):
        input_channels(layout, flow_channels)


def test_mismatched_features_raise():
    diff, flow = _features(size=8)
    with pytest.raises(ValueError, match="differ"):
        compose_input(diff, flow[:, :, :4])
    with pytest.raises(ValueError, match="flow must be"):
        compose_input(diff, flow[:, :3])


@pytest.mark.parametrize("layout, flow_channels, expected", [("stack_height", (0, 1, 2), 3),
                                                             ("channels", (0, 1, 2), 6), ("channels", (0, 1, 2, 3), 7)])
def test_input_channels_match_the_composed_input(layout, flow_channels, expected):
    assert layout in INPUT_LAYOUTS
    assert input_channels(layout, flow_channels) == expected
    diff, flow = _features(size=28)
    encoder = build_encoder("small", in_channels=expected)
    assert encoder(compose_input(diff, flow, layout, flow_channels)).shape == (2, encoder.out_dim)


def test_linear_classifier_outputs_logits():
    torch.manual_seed(0)
    encoder = build_encoder("small")
    classifier = LinearClassifier(encoder, n_classes=7)
    assert classifier.encoder is encoder
    assert classifier(torch.randn(4, 3, 56, 28)).shape == (4, 7)


def test_prototypes_are_class_means_and_zero_for_an_empty_class():
    embeddings = torch.tensor([[1.0, 0.0], [3.0, 2.0], [0.0, 5.0], [-1.0, 1.0], [1.0, 3.0]])
    labels = torch.tensor([0, 0, 1, 2, 2])
    prototypes = PrototypeClassifier.prototypes(embeddings, labels, n_classes=4)
    expected = torch.tensor([[2.0, 1.0], [0.0, 5.0], [0.0, 2.0], [0.0, 0.0]])
    assert torch.allclose(prototypes, expected)


def test_logits_are_tau_times_cosine():
    model = PrototypeClassifier(build_encoder("small"), tau=10.0)
    queries = torch.tensor([[3.0, 4.0], [1.0, -1.0]])
    prototypes = torch.tensor([[1.0, 0.0], [0.0, 2.0], [0.0, 0.0]])
    by_hand = torch.tensor([[10 * 3 / 5, 10 * 4 / 5, 0.0],
                            [10 / math.sqrt(2), -10 / math.sqrt(2), 0.0]])  # a zero prototype scores 0
    assert torch.allclose(model.logits(queries, prototypes), by_hand, atol=1e-6)


def test_tau_is_learnable_from_ten():
    torch.manual_seed(0)
    model = PrototypeClassifier(build_encoder("small"))
    assert isinstance(model.tau, torch.nn.Parameter) and model.tau.item() == 10.0
    assert any(p is model.tau for p in model.parameters())
    support_x, query_x = torch.randn(6, 3, 56, 28), torch.randn(3, 3, 56, 28)
    logits = model(support_x, torch.tensor([0, 0, 1, 1, 2, 2]), query_x, n_classes=3)
    F.cross_entropy(logits, torch.tensor([0, 1, 2])).backward()
    assert model.tau.grad is not None and model.tau.grad.abs().item() > 0


def test_forward_equals_embed_prototypes_logits():
    torch.manual_seed(0)
    model = PrototypeClassifier(build_encoder("small")).eval()  # eval: BatchNorm independent of the batch
    support_x, support_y, query_x = torch.randn(4, 3, 56, 28), torch.tensor([0, 0, 1, 1]), torch.randn(3, 3, 56, 28)
    with torch.no_grad():
        expected = model.logits(model.embed(query_x), model.prototypes(model.embed(support_x), support_y, 2))
        assert torch.allclose(model(support_x, support_y, query_x, n_classes=2), expected, atol=1e-5)


SIZE = 16  # pixels; the composed image is 3 x 32 x 16


def _motion_classes(per_class: int, seed: int) -> tuple[torch.Tensor, torch.Tensor]:
    """Noise images with one Gaussian blob of motion at a random place; the class is the motion's
    direction (right, left, down), so it is seen only in the flow half of the composed image."""
    rng = np.random.default_rng(seed)
    rows, cols = np.mgrid[0:SIZE, 0:SIZE]
    diffs, flows, labels = [], [], []
    for label, (channel, sign) in enumerate([(0, 1.0), (0, -1.0), (1, 1.0)]):
        for _ in range(per_class):
            centre_row, centre_col = rng.uniform(4, SIZE - 4, 2)
            blob = 1.5 * np.exp(-((rows - centre_row) ** 2 + (cols - centre_col) ** 2) / 8.0)
            flow = rng.normal(size=(4, SIZE, SIZE))
            flow[channel] += sign * blob
            flow[2] += blob  # magnitude: the same for every class
            diffs.append(rng.normal(size=(3, SIZE, SIZE)))
            flows.append(flow)
            labels.append(label)
    return compose_input(np.array(diffs), np.array(flows)), torch.tensor(labels)


@pytest.mark.slow  # 100 optimisation steps: ~4 s
def test_episodic_training_learns_an_easy_problem():
    torch.manual_seed(0)
    train_x, train_y = _motion_classes(per_class=30, seed=0)
    test_x, test_y = _motion_classes(per_class=30, seed=1)
    model = PrototypeClassifier(build_encoder("small"))

    def held_out_accuracy() -> float:
        model.eval()
        support = torch.as_tensor(draw_support(train_y.numpy(), 3, k_shot=5, seed=0))
        with torch.no_grad():
            prototypes = model.prototypes(model.embed(train_x[support]), train_y[support], 3)
            predicted = model.logits(model.embed(test_x), prototypes).argmax(dim=1)
        model.train()
        return (predicted == test_y).float().mean().item()

    before = held_out_accuracy()
    optimiser = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9)
    sampler = EpisodeSampler(train_y.numpy(), n_classes=3, k_shot=5, q_query=5, seed=0)
    for _ in range(100):
        episode = sampler.episode()
        logits = model(train_x[episode.support], torch.as_tensor(episode.support_labels),
                       train_x[episode.query], n_classes=3)
        loss = F.cross_entropy(logits, torch.as_tensor(episode.query_labels))
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
    after = held_out_accuracy()
    assert after >= 0.85  # chance is 1/3
    assert after >= before + 0.25
