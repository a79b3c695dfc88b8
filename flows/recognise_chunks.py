"""`merflow recognise`'s units of work on one video, each run on a Dask worker or in the driver alike: the face
checks of a chunk of frames, one chunk's per-frame signals for one window k, and a batch of spotted intervals
as clips. Each job opens the video itself (storage/videos.py) and reads only its frames; nothing here writes.
Kept apart from modules that import Prefect: a worker unpickling these imports only merflow's storage/,
tasks/ and training/ (as flows/spotting_chunks.py).
"""

from __future__ import annotations

from merflow.configs.features import FeatureConfig
from merflow.configs.spotting import SpotFeatureConfig
from merflow.storage.videos import Video, VideoFrames
from merflow.tasks.faces import NoFaceError
from merflow.tasks.spotting_features import Track, chunk_features, clip_features, detect_at


def worker_setup() -> str:
    """Import the per-frame code on a worker (its start, not the first chunk's); which merflow it runs."""
    import merflow.tasks.spotting_features  # noqa: F401
    import merflow.training.spotting.softnet  # noqa: F401
    from merflow import __version__

    return __version__


def detect_job(video: Video, indices: list[int], config: SpotFeatureConfig) -> dict[int, dict | None]:
    """The faces found at the checked frames ``indices`` (grey frames, as the spot flow reads a long video's)."""
    return detect_at(VideoFrames(video, "grey", window=4), indices, config)


def signal_job(video: Video, start: int, stop: int, k: int, track: dict, config: SpotFeatureConfig,
               spotters: dict) -> dict:
    """Frames ``start`` .. ``stop`` - 1 against i + k: their motion score and each spotter's signal (``spotters``:
    kind -> FittedSpotter of window k), so a chunk hands back a few numbers a frame, not SOFTNet's images."""
    frames = VideoFrames(video, "grey", window=k + 2)
    roi, motion = chunk_features(frames, start, stop, k, Track.from_dict(track), config)
    valid = max(min(stop, video.n_frames - k) - start, 0)
    signals = {kind: spotter.signal({"roi": roi[:valid], "motion": motion}, valid + k)
               for kind, spotter in spotters.items()}
    frames.close()
    return {"start": start, "k": k, "motion": motion, "signals": signals}


def clip_job(video: Video, intervals: list[tuple[int, int]], features: FeatureConfig, mode: str) -> list[dict]:
    """Each interval (start, end) as a clip (tasks/spotting_features.py ``clip_features``, the apex spotted):
    {"arrays", "info"}, or {"error"} where its start frame shows no face."""
    longest = max((end - start + 1 for start, end in intervals), default=1)
    frames = VideoFrames(video, mode, window=longest + 2)
    found = []
    for start, end in intervals:
        try:
            arrays, info = clip_features(frames, start, end, None, features)
        except NoFaceError as error:
            found.append({"error": f"no face on its start frame ({error})"})
            continue
        found.append({"arrays": arrays, "info": info})
    frames.close()
    return found
