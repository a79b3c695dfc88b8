"""storage/checkpoints.py: a stage's checkpoint is made once, loaded after, and made again when unreadable;
on an object store the lock is local and nothing but the checkpoint is written (moved from test_locations.py)."""

from __future__ import annotations

import uuid

import pytest
import torch

from merflow.configs.train import TrainConfig
from merflow.storage import locations
from merflow.storage.checkpoints import Checkpoints, checkpoints_at


@pytest.fixture
def memory() -> str:
    """A fresh folder on fsspec's in-process memory file system."""
    root = f"memory://merflow-test-{uuid.uuid4().hex[:8]}"
    yield root
    locations.delete(root, recursive=True)


def test_checkpoints_on_an_object_store_are_loaded_not_trained_again(memory, tmp_path, monkeypatch):
    from merflow.training.stages import _checkpoint

    monkeypatch.setenv("MERFLOW_CACHE", str(tmp_path))  # the local lock file keyed by the checkpoint's URL
    calls = []

    def make():
        calls.append(1)
        return {"weights": torch.arange(3.0)}

    folder, config = locations.join(memory, "checkpoints", "run", "fold"), TrainConfig()
    store = checkpoints_at(folder)
    first = _checkpoint(store, "micro_pretrain", config, make)
    again = _checkpoint(store, "micro_pretrain", config, make)
    assert len(calls) == 1 and torch.equal(again["weights"], first["weights"])
    (written,) = locations.glob(folder, "micro_pretrain-*.pt")
    assert list((tmp_path / "locks").iterdir())  # locked locally, nothing written beside the checkpoint
    assert [locations.name(p) for p in locations.glob(folder, "*")] == [locations.name(written)]
    locations.write_bytes(written, b"torn")  # an unreadable checkpoint is trained again and replaced
    _checkpoint(store, "micro_pretrain", config, make)
    assert len(calls) == 2 and locations.read_bytes(written) != b"torn"


def test_a_checkpoint_is_named_by_its_stage_and_key_and_another_key_is_another_file(tmp_path):
    store = Checkpoints(tmp_path).folder("fold_1")
    assert checkpoints_at(store) is store
    assert store.load_or_make("micro", "abc", lambda: {"n": 1}) == {"n": 1}
    assert store.load_or_make("micro", "abc", lambda: {"n": 2}) == {"n": 1}  # loaded, not made again
    assert store.load_or_make("micro", "def", lambda: {"n": 3}) == {"n": 3}
    assert sorted(p.name for p in (tmp_path / "fold_1").glob("*.pt")) == ["micro-abc.pt", "micro-def.pt"]
    assert store.file("micro", "abc") == locations.join(str(tmp_path), "fold_1", "micro-abc.pt")
