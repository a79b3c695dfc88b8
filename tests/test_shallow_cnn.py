"""training/shallow_cnn.py: the C kernel trains the shallow CNNs (STSTNet's and the survey's network) as
PyTorch's autograd does, step by step, and a fold's result does not depend on the folds trained beside it."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from torch.nn import functional as F

from merflow.training import shallow_cnn as sk

from requires import requires_c_compiler

pytestmark = requires_c_compiler


def _images(n: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """Integer images in 0..255 (as PNGs give them) with a class-dependent blob, and their labels."""
    rng = np.random.default_rng(seed)
    labels = np.arange(n) % 3
    images = rng.integers(0, 200, (n, 3, 28, 28)).astype(np.float32)
    images[:, 1, 6:14, 6:14] += 18 * labels[:, None, None]
    return images, labels


def _initial(network: sk.Network, seed: int, negative_scale: bool = True) -> np.ndarray:
    rng = np.random.default_rng(seed)
    c, k = network.channels, network.classes
    scale = np.ones(c, np.float32)
    if negative_scale:
        scale[::3] = -0.7  # a negative BN scale: max pooling after BN takes the minimum before it
    return sk.join_parameters({"conv_weight": rng.uniform(-0.19, 0.19, (c, 3, 3, 3)),
                               "conv_bias": rng.uniform(-0.19, 0.19, c), "bn_scale": scale,
                               "bn_offset": rng.uniform(-0.1, 0.1, c),
                               "fc_weight": rng.uniform(-0.05, 0.05, (k, c * 25)), "fc_bias": rng.uniform(-0.05, 0.05, k)})


def _autograd(images, labels, network: sk.Network, schedule: sk.Schedule, job: sk.Job):
    """The same network and steps in float64 with PyTorch's autograd, conv -> ReLU -> BN -> max pool ->
    dropout (the kernel's masks) -> average pool -> linear, Adam with coupled weight decay."""
    parts = {k: torch.tensor(v.copy(), dtype=torch.float64, requires_grad=True)
             for k, v in sk.split_parameters(job.params, network.channels, network.classes).items()}
    decayed = [parts[k] for k in ("conv_weight", "bn_scale", "bn_offset", "fc_weight")]
    optimiser = torch.optim.Adam([{"params": decayed, "weight_decay": schedule.weight_decay},
                                  {"params": [parts["conv_bias"], parts["fc_bias"]], "weight_decay": 0.0}],
                                 lr=schedule.lr, betas=(schedule.beta1, schedule.beta2), eps=schedule.adam_eps)
    x_all = torch.tensor(images, dtype=torch.float64)
    if job.mean_image is not None:
        x_all = x_all - torch.tensor(job.mean_image, dtype=torch.float64)
    running_mean = torch.zeros(network.channels, dtype=torch.float64)
    running_var = torch.ones(network.channels, dtype=torch.float64)
    losses = []
    for step in range(schedule.steps):
        batch = job.batches[step % len(job.batches)]
        z = F.conv2d(x_all[batch], parts["conv_weight"], parts["conv_bias"], padding=network.pad)
        y = F.batch_norm(F.relu(z), running_mean, running_var, parts["bn_scale"], parts["bn_offset"], training=True,
                         momentum=schedule.bn_momentum, eps=schedule.bn_eps)
        pooled = F.max_pool2d(y, 3, 3, 1)
        keep = sk.dropout_keep(job.seed, step, len(batch), network.channels, schedule.dropout)
        pooled = pooled * torch.tensor(keep, dtype=torch.float64) / (1 - schedule.dropout)
        logits = F.avg_pool2d(pooled, 2, 2).flatten(1) @ parts["fc_weight"].T + parts["fc_bias"]
        loss = F.cross_entropy(logits, torch.tensor(labels[batch]))
        optimiser.zero_grad()
        loss.backward()
        optimiser.step()
        losses.append(loss.item())
    flat = sk.join_parameters({k: v.detach().numpy() for k, v in parts.items()})
    return flat, np.array(losses), running_mean.numpy(), running_var.numpy()


@pytest.mark.parametrize("kind", ["ststnet", "survey"])
def test_kernel_steps_equal_autograd(kind):
    images, labels = _images(40)
    if kind == "ststnet":  # padding 2 (30x30 maps), 16 filters, no weight decay, two batches an epoch
        network = sk.Network(2, 16, 3)
        schedule = sk.Schedule(steps=6, lr=3e-3)
        batches, mean = [np.arange(0, 24), np.arange(24, 40)], None
    else:  # the survey's: 'same' padding, 5 filters, zero-centred input, L2 1e-4, one batch
        network = sk.Network(1, 5, 3)
        schedule = sk.Schedule(steps=5, lr=3e-3, weight_decay=1e-4)
        batches, mean = [np.arange(3, 35)], images[3:].mean(0)
    job = sk.Job("fold", batches, [labels[b] for b in batches], _initial(network, 1), seed=11, mean_image=mean)
    trained = sk.train(images, network, schedule, [job])["fold"]
    params, losses, running_mean, running_var = _autograd(images, labels, network, schedule, job)
    assert np.abs(params - job.params).max() > 1e-3  # the steps moved the weights
    np.testing.assert_allclose(trained.losses, losses, rtol=1e-5)
    np.testing.assert_allclose(trained.params, params, rtol=0, atol=2e-5)
    np.testing.assert_allclose(trained.running_mean, running_mean, rtol=1e-4)
    np.testing.assert_allclose(trained.running_var, running_var, rtol=1e-4)
    assert 0 < trained.flip_rate < 1


def test_a_fold_does_not_depend_on_the_folds_beside_it():
    images, labels = _images(36, seed=2)
    network, schedule = sk.Network(2, 16, 3), sk.Schedule(steps=8, lr=1e-3)
    jobs = []
    for f in range(3):
        train = np.delete(np.arange(36), np.arange(f * 4, f * 4 + 4))
        batches = [train[:20], train[20:]]
        jobs.append(sk.Job(f"fold{f}", batches, [labels[b] for b in batches], _initial(network, f, False), seed=f))
    together = sk.train(images, network, schedule, jobs, threads=2)
    for job in jobs:
        alone = sk.train(images, network, schedule, [job])[job.name]
        np.testing.assert_array_equal(alone.params, together[job.name].params)
        np.testing.assert_array_equal(alone.losses, together[job.name].losses)
    assert not np.array_equal(together["fold0"].params, together["fold1"].params)


def test_parameter_layout_and_bad_jobs():
    network = sk.Network(2, 16, 3)
    assert network.parameters == sk.parameter_count(16, 3) == 1683 and network.side == 30
    flat = np.arange(network.parameters, dtype=np.float32)
    parts = sk.split_parameters(flat, 16, 3)
    assert parts["conv_weight"].shape == (16, 3, 3, 3) and parts["fc_weight"].shape == (3, 400)
    np.testing.assert_array_equal(sk.join_parameters(parts), flat)
    images, labels = _images(8)
    with pytest.raises(ValueError, match="class index"):
        sk.train(images, network, sk.Schedule(steps=1, lr=1e-3),
                 [sk.Job("bad", [np.arange(8)], [labels + 5], flat, 0)])
    with pytest.raises(ValueError, match="takes \\(N, 3, 28, 28\\)"):
        sk.padded(np.zeros((2, 3, 20, 20)), 2)
    with pytest.raises(ValueError, match="engine kernel: the run is on a GPU|engine kernel"):
        sk.choose_engine("kernel", "cpu", "float64 training")
    reasons = []
    assert sk.choose_engine("auto", "cpu", "float64 training", reasons) == "torch" and reasons == ["float64 training"]
    assert sk.choose_engine("torch") == "torch"
