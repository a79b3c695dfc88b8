"""The Zarr feature store: layout, one writer per shard, completion marks, the reader."""

import json
import subprocess
import sys

import numpy as np
import pytest
import zarr

from merflow.storage.features import (
    ARRAYS,
    FeatureConfig,
    FeatureReader,
    FeatureStore,
    StoreDamaged,
    group_name,
    open_features,
)
from merflow.storage.locks import LockHeld
from merflow.tasks.faces import FaceConfig
from merflow.tasks.motion import MotionConfig

CONFIG = FeatureConfig(size=28, shard_size=4)


def _shard_arrays(length: int, fill: float) -> dict:
    return {name: np.full((length, channels, 28, 28), fill, dtype=dtype) for name, (dtype, channels) in ARRAYS.items()}


def _write(store: FeatureStore, keys: list[str]):
    index = store.prepare_group("casme2", CONFIG, keys)
    name = group_name("casme2", CONFIG)
    for shard, start in enumerate(range(0, len(index), CONFIG.shard_size)):
        rows = keys[start:start + CONFIG.shard_size]
        marks = {k: {"status": "ok", "fingerprint": "f", "apex_source": "annotated"} for k in rows}
        store.write_shard(name, shard, start, _shard_arrays(len(rows), float(shard + 1)), marks)
    return name


def test_layout_attributes_and_dimension_names(tmp_path):
    store = FeatureStore(tmp_path / "features.zarr")
    name = _write(store, [f"casme2/sub01/EP{i:02d}" for i in range(10)])
    group = zarr.open_group(str(tmp_path / "features.zarr"), mode="r")[name]
    flow = group["flow"]
    assert flow.shape == (10, 4, 28, 28) and flow.dtype == np.float32
    assert flow.metadata.dimension_names == ("sample", "channel", "y", "x")
    assert flow.chunks == (1, 4, 28, 28) and flow.shards == (4, 4, 28, 28)
    assert group["onset"].dtype == np.uint8
    meta = group.attrs["merflow"]
    assert meta["config_hash"] == CONFIG.hash and meta["dataset"] == "casme2"
    assert meta["sample_index"]["casme2/sub01/EP03"] == 3 and "zarr" in meta["versions"]
    assert FeatureConfig.from_dict(meta["config"]) == CONFIG


def test_reader_returns_rows_in_the_asked_order(tmp_path):
    store = FeatureStore(tmp_path / "f.zarr")
    keys = [f"casme2/sub01/EP{i:02d}" for i in range(10)]
    _write(store, keys)
    reader = open_features(tmp_path / "f.zarr", "casme2")
    assert reader.sample_keys == keys
    batch = reader.load([keys[9], keys[0], keys[9]])
    assert batch["flow"].shape == (3, 4, 28, 28)
    assert [float(v) for v in batch["diff"][:, 0, 0, 0]] == [3.0, 1.0, 3.0]  # shard 2, shard 0, shard 2
    with pytest.raises(KeyError):
        reader.load(["casme2/sub99/EP01"])


def test_unmarked_or_torn_shards_are_not_read(tmp_path):
    store = FeatureStore(tmp_path / "f.zarr")
    keys = [f"casme2/sub01/EP{i:02d}" for i in range(8)]
    name = _write(store, keys)
    store.clear_mark(name, 1)
    assert FeatureReader(store, name).sample_keys == keys[:4]
    # A writer killed while writing its mark leaves a torn file: not a completion mark.
    store.fs.pipe_file(store.mark_path(name, 1), b'{"shard": 1, "sam')
    assert store.read_mark(name, 1) is None
    assert FeatureReader(store, name).sample_keys == keys[:4]


def test_growing_keeps_rows(tmp_path):
    store = FeatureStore(tmp_path / "f.zarr")
    first = store.prepare_group("casme2", CONFIG, ["a", "b", "c"])
    second = store.prepare_group("casme2", CONFIG, ["d", "b", "a", "c", "e"])
    assert {k: second[k] for k in first} == first and second["d"] == 3 and second["e"] == 4
    assert zarr.open_group(str(tmp_path / "f.zarr"), mode="r")[group_name("casme2", CONFIG)]["diff"].shape[0] == 5


def test_config_hash_and_memory_store():
    other = FeatureConfig(size=28, shard_size=4, motion=MotionConfig(algorithm="dis"))
    assert other.hash != CONFIG.hash
    assert FeatureConfig(face=FaceConfig(margin=0.3)).hash != FeatureConfig().hash
    with pytest.raises(ValueError, match="size"):
        FeatureConfig(size=81)
    store = FeatureStore("memory://merflow-test/features.zarr")
    _write(store, ["x", "y"])
    assert json.loads(store.fs.cat_file(store.mark_path(group_name("casme2", CONFIG), 0)))["samples"]["y"]["status"] == "ok"
    assert open_features("memory://merflow-test/features.zarr", "casme2").sample_keys == ["x", "y"]


def test_first_frame_onset_plus_one_names_another_group_and_the_default_keeps_its_hash():
    published = FeatureConfig(size=80, first_frame="onset+1")
    assert published.hash != FeatureConfig(size=80).hash
    assert "first_frame" not in FeatureConfig().to_dict()  # stores written before the field keep their group names
    assert FeatureConfig.from_dict(json.loads(json.dumps(published.to_dict()))) == published
    assert FeatureConfig.from_dict(json.loads(json.dumps(FeatureConfig().to_dict()))) == FeatureConfig()
    with pytest.raises(ValueError, match="first_frame"):
        FeatureConfig(first_frame="apex")


def test_a_mark_records_each_row_and_file_and_a_read_checks_them(tmp_path):
    """The mark holds a CRC per row of every array and each shard file's size and CRC; a read for training
    compares what it returns and refuses a damaged shard with one line naming its file and samples."""
    store = FeatureStore(tmp_path / "f.zarr")
    keys = [f"casme2/sub01/EP{i:02d}" for i in range(8)]
    name = _write(store, keys)
    mark = store.read_mark(name, 1)
    assert mark["checksums"]["algorithm"] == "crc32" and len(mark["checksums"]["arrays"]["flow"]) == 4
    flow = tmp_path / "f.zarr" / name / "flow" / "c" / "1" / "0" / "0" / "0"
    assert mark["checksums"]["files"]["flow"]["size"] == flow.stat().st_size
    group = store.open_root("r")[name]
    assert store.verify_shard(group, name, 1, mark) is None and store.files_intact(name, 1, mark)

    values = flow.read_bytes()
    flow.write_bytes(values[:-8] + bytes(8))  # the shard index's end overwritten: same size, other bytes
    assert not store.files_intact(name, 1, mark)
    damage = store.verify_shard(group, name, 1, mark, quick=True)
    assert damage.files == (str(flow),) and damage.samples == tuple(keys[4:8]) and "cannot be read" in damage.problem
    reader = FeatureReader(store, name)
    assert reader.load(keys[:4])["flow"].shape == (4, 4, 28, 28)  # shard 0 is whole
    with pytest.raises(StoreDamaged, match=f"{flow} cannot be read .*samples {keys[4]}, .*merflow features"):
        reader.load(keys[2:6])
    flow.unlink()  # a deleted shard reads as zeros: its checksums say otherwise
    with pytest.raises(StoreDamaged, match=f"{flow} is missing \\(reads as zeros\\)"):
        FeatureReader(store, name).load(keys[4:])


PLANNER = """
import sys
from merflow.configs.features import FeatureConfig
from merflow.storage.features import FeatureStore
store = FeatureStore(sys.argv[1])
for round in range(int(sys.argv[3])):
    store.prepare_group("casme2", FeatureConfig(size=28, shard_size=4),
                        [f"casme2/{sys.argv[2]}/EP{round:02d}-{i}" for i in range(5)])
"""


def test_two_drivers_planning_at_once_keep_one_row_per_sample(tmp_path):
    """Two processes grow the same group's sample index at once, twenty times each (the plan lock makes them
    take turns): every key of both has a row, no row is given twice, the arrays have as many rows."""
    url = str(tmp_path / "f.zarr")
    planners = [subprocess.Popen([sys.executable, "-c", PLANNER, url, who, "20"]) for who in ("sub01", "sub02")]
    assert [planner.wait(timeout=120) for planner in planners] == [0, 0]
    group = zarr.open_group(url, mode="r")[group_name("casme2", CONFIG)]
    index = group.attrs["merflow"]["sample_index"]
    assert len(index) == 2 * 20 * 5 and sorted(index.values()) == list(range(200))
    assert all(group[name].shape[0] == 200 for name in ARRAYS)


def test_a_shard_claimed_by_another_process_is_left_to_it(tmp_path):
    store = FeatureStore(tmp_path / "f.zarr")
    name = _write(store, [f"casme2/sub01/EP{i:02d}" for i in range(8)])
    claimer = subprocess.Popen([sys.executable, "-c", "import sys, time\nfrom merflow.storage import locks\n"
                                "locks.acquire(sys.argv[1], 'shard 1')\nprint('held', flush=True)\ntime.sleep(60)",
                                store.claim_location(name, 1)], stdout=subprocess.PIPE, text=True)
    try:
        assert claimer.stdout.readline().strip() == "held"
        assert store.claim_shard(name, 1) is None
        with pytest.raises(LockHeld, match=f"shard 1 of {name} .* is in use by .*pid {claimer.pid}"):
            store.write_shard(name, 1, 4, _shard_arrays(4, 9.0), {})
        with store.claimed(name, 0) as claim:
            assert claim is not None
    finally:
        claimer.kill()
        claimer.wait()
    with store.claimed(name, 1) as claim:  # its process is gone: taken over
        assert claim is not None and claim.took_over is not None and claim.took_over.pid == claimer.pid


def _imported_config(array="flow", channels=("strain", "v", "u")):
    from merflow.configs.features import ImportedConfig

    return FeatureConfig(size=28, shard_size=4, imported=ImportedConfig(
        format="flow-images", source="/data/flows", source_sha256="ab" * 32, sample_list="/data/gt.csv",
        sample_list_sha256="cd" * 32, array=array, channels=channels, scaling="uint8 0..255 min-max per image",
        order="as cv2.imread decodes the PNG (BGR)"))


def test_an_imported_group_holds_its_one_array_and_says_what_it_is(tmp_path):
    from merflow.storage.features import read_feature_arrays

    config = _imported_config()
    store = FeatureStore(tmp_path / "f.zarr")
    keys = [f"casme2/sub01/EP{i:02d}" for i in range(6)]
    store.prepare_group("casme2", config, keys)
    name = group_name("casme2", config)
    for shard, start in enumerate(range(0, 6, 4)):
        rows = keys[start:start + 4]
        values = np.full((len(rows), 3, 28, 28), 7 + shard, np.uint8)
        store.write_shard(name, shard, start, {"flow": values},
                          {k: {"status": "ok", "fingerprint": "f", "apex_source": "imported"} for k in rows})
    group = zarr.open_group(str(tmp_path / "f.zarr"), mode="r")[name]
    assert sorted(group.array_keys()) == ["flow"] and group["flow"].dtype == np.uint8
    assert group["flow"].attrs["channels"] == ["strain", "v", "u"]
    # Hashed and stored without the face and motion settings that decided nothing; read back whole.
    stored = group.attrs["merflow"]["config"]
    assert "motion" not in stored and stored["imported"]["source_sha256"] == "ab" * 32
    assert FeatureConfig.from_dict(stored) == config and config.hash != FeatureConfig(size=28, shard_size=4).hash
    read = read_feature_arrays(str(tmp_path / "f.zarr"), ["casme2"], config, ("diff", "flow", "apex"))
    assert set(read["arrays"]) == {"flow"} and int(read["arrays"]["flow"][keys[5]][0, 0, 0]) == 8
    convention = read["conventions"]["flow"]
    assert (convention["origin"], convention["channels"], convention["source"]) == (
        "imported", ["strain", "v", "u"], "/data/flows")
    assert read["groups"] == (name,) and read["apex_source"][keys[0]] == "imported"


def test_computed_groups_record_their_conventions(tmp_path):
    from merflow.storage.features import read_feature_arrays

    store = FeatureStore(tmp_path / "f.zarr")
    _write(store, ["casme2/sub01/EP01", "casme2/sub01/EP02"])
    read = read_feature_arrays(str(tmp_path / "f.zarr"), ["casme2"], CONFIG, ("flow", "apex"))
    assert read["conventions"]["flow"]["channels"] == ["u", "v", "magnitude", "strain"]
    assert read["conventions"]["flow"]["origin"] == "computed" and read["conventions"]["flow"]["algorithm"] == "farneback"
    assert read["conventions"]["apex"]["channels"] == ["red", "green", "blue"]
