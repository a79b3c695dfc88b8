"""A user's video as merflow reads it: a container file (mp4, avi, mov, mkv, ... through OpenCV's FFmpeg) or a
folder of frames (sorted naturally: frame2 before frame10), its frame count, frame rate and fingerprint, and
its frames as a sequence that ``tasks/spotting_features.py`` reads (``frames[i]``, uint8 grey or RGB).

Checked when opened (``open_video``), each a ``VideoError`` of one line: a file OpenCV cannot open (a
truncated mp4 or mov: its index is written last), a container without a usable frame rate (``--fps``
gives it), a first or last frame that cannot be decoded (a truncated avi lists frames it does not
hold). A frame that fails later (damage inside the file) is a ``VideoError`` naming it when it is read.

OpenCV's own wheel writes mp4v (MPEG-4 Part 2) in .mp4, .mov, .avi and .mkv, MJPG in .avi and .mkv,
FFV1 (lossless) in .avi and .mkv, and no H.264 (no encoder in its FFmpeg); it seeks all of those to the
exact frame (tests/test_videos.py). Where a seek lands elsewhere (some H.264 streams with B-frames), the
reader notices (the position it reports) and decodes from the start instead.

A video at an fsspec URL is copied into the local cache first (storage/locations.py ``materialize``):
FFmpeg reads local files. Frames are decoded lazily, a window of recent ones kept, so an hour of video
never sits in memory; each Dask task opens the file itself and reads its chunk.
"""

from __future__ import annotations

import hashlib
import os
import re
from collections import OrderedDict
from dataclasses import dataclass
from pathlib import Path

# FFmpeg's own log lines ("header damaged", "moov atom not found") go to stderr from C; merflow says what
# went wrong in one line of its own. Read when OpenCV's FFmpeg backend first opens a file.
os.environ.setdefault("OPENCV_FFMPEG_LOGLEVEL", "-8")

import cv2  # noqa: E402
import numpy as np  # noqa: E402

from merflow.storage import locations  # noqa: E402

VIDEO_SUFFIXES = (".mp4", ".avi", ".mov", ".mkv", ".m4v", ".webm", ".mpg", ".mpeg", ".wmv")
IMAGE_SUFFIXES = (".jpg", ".jpeg", ".png", ".bmp", ".tif", ".tiff", ".webp")
JUNK_NAMES = frozenset({"__MACOSX", ".DS_Store", "Thumbs.db"})
FRAME_MODES = ("grey", "colour")
MAX_FPS = 10000.0          # a container's rate above this (or 0, NaN) is no rate: --fps gives one
SEEK_INSTEAD_OF_READING = 64  # frames ahead beyond which the reader seeks rather than decodes its way there


class VideoError(ValueError):
    """A video that cannot be read as one (not a video, truncated, damaged, no frame rate): one line."""


def natural_key(name: str) -> tuple:
    """Sort key of a file name with its numbers compared as numbers: img2.jpg before img10.jpg."""
    return tuple(int(part) if part.isdigit() else part.lower() for part in re.split(r"(\d+)", name))


@dataclass(frozen=True)
class Video:
    """A video opened and checked: where it is read from, its frames, rate and size, and its fingerprint."""

    location: str               # as the user gave it (normalised)
    path: str                   # the local file or folder read
    kind: str                   # file | frames
    n_frames: int
    fps: float
    fps_source: str             # container | given
    width: int
    height: int
    names: tuple[str, ...] = ()  # a folder's frame files, in natural order
    fingerprint: str = ""       # changes when the video's content changes

    @property
    def name(self) -> str:
        """The video's name without its suffix (results are named after it)."""
        base = locations.name(self.location)
        return base.rsplit(".", 1)[0] if self.kind == "file" and "." in base else base

    def describe(self) -> dict:
        """Plain JSON values (a result's record of its input)."""
        return {"location": self.location, "kind": self.kind, "n_frames": self.n_frames, "fps": self.fps,
                "fps_source": self.fps_source, "width": self.width, "height": self.height,
                "fingerprint": self.fingerprint}


def file_fingerprint(path: str | os.PathLike) -> str:
    """The SHA-256 of a file's bytes (the first 20 hex digits)."""
    digest = hashlib.sha256()
    with open(path, "rb") as file:
        while block := file.read(1 << 20):
            digest.update(block)
    return digest.hexdigest()[:20]


def folder_fingerprint(folder: Path, names: tuple[str, ...]) -> str:
    """Every frame file's name, size and modification time (as the per-frame store fingerprints a long video)."""
    digest = hashlib.sha256(repr(len(names)).encode())
    for name in names:
        stat = (folder / name).stat()
        digest.update(f"{name}:{stat.st_size}:{stat.st_mtime_ns};".encode())
    return digest.hexdigest()[:20]


def local_copy(location: str | os.PathLike, cache: str | os.PathLike | None = None) -> Path:
    """The local file or folder of a video: itself, or a URL's file copied into ``cache`` (default: the local
    cache) once; a FileNotFoundError where there is none."""
    given = locations.normalise(location)
    if not locations.is_remote(given):
        path = Path(given)
        if not path.exists():
            raise FileNotFoundError(f"no video at {given}")
        return path
    if locations.isdir(given):
        raise VideoError(f"{given}: a folder of frames must be a local folder (copy it here first)")
    try:
        return Path(locations.materialize(given, cache or locations.cache_dir(locations.parent(given), "videos")))
    except FileNotFoundError:
        raise FileNotFoundError(f"no video at {given}") from None


def fingerprint(path: str | os.PathLike) -> str:
    """What changes with a video's content: a file's SHA-256, a folder's frame names, sizes and times. Made from
    the bytes alone, so a file that cannot be opened as a video has one too (a result that records its failure)."""
    path = Path(path)
    if path.is_dir():
        return folder_fingerprint(path, _frame_names(path))
    return file_fingerprint(path)


def open_video(location: str | os.PathLike, fps: float | None = None, cache: str | os.PathLike | None = None,
               known_fingerprint: str | None = None) -> Video:
    """Open and check a video file or a folder of frames (module docstring); ``fps`` overrides the container's
    rate (and is needed for a folder). A URL is copied into ``cache`` first (``local_copy``);
    ``known_fingerprint`` spares hashing the file again."""
    if fps is not None and not (0 < float(fps) <= MAX_FPS):
        raise VideoError(f"--fps must be a frame rate above 0, not {fps}")
    given = locations.normalise(location)
    path = local_copy(given, cache)
    if path.is_dir():
        return _open_folder(given, path, fps, known_fingerprint)
    return _open_file(given, path, fps, known_fingerprint)


def _frame_names(folder: Path) -> tuple[str, ...]:
    return tuple(sorted((p.name for p in folder.iterdir()
                         if p.is_file() and p.suffix.lower() in IMAGE_SUFFIXES and p.name not in JUNK_NAMES
                         and not p.name.startswith(".")), key=natural_key))


def _open_folder(location: str, folder: Path, fps: float | None, known: str | None) -> Video:
    names = _frame_names(folder)
    if not names:
        raise VideoError(f"{location} holds no frames ({', '.join(s.lstrip('.') for s in IMAGE_SUFFIXES)} files) "
                         "and is not a video file")
    if fps is None:
        raise VideoError(f"{location} is a folder of frames, which has no frame rate: give it with --fps")
    first = cv2.imread(str(folder / names[0]), cv2.IMREAD_UNCHANGED)
    if first is None:
        raise VideoError(f"{location}: its first frame {names[0]} cannot be decoded")
    return Video(location, str(folder), "frames", len(names), float(fps), "given", int(first.shape[1]),
                 int(first.shape[0]), names, known or folder_fingerprint(folder, names))


def capture_of(path: str | os.PathLike) -> cv2.VideoCapture:
    """OpenCV's FFmpeg capture of a file, its warning about a file it cannot open kept off the console (the caller
    says what is wrong in one line)."""
    level = cv2.utils.logging.getLogLevel()
    cv2.utils.logging.setLogLevel(min(level, cv2.utils.logging.LOG_LEVEL_ERROR))
    try:
        return cv2.VideoCapture(str(path), cv2.CAP_FFMPEG)
    finally:
        cv2.utils.logging.setLogLevel(level)


def _open_file(location: str, path: Path, fps: float | None, known: str | None) -> Video:
    if path.stat().st_size == 0:
        raise VideoError(f"{location} is empty (0 bytes)")
    capture = capture_of(path)
    try:
        if not capture.isOpened():
            raise VideoError(f"{location} cannot be opened as a video: not a video, or truncated (an mp4 or mov "
                             "cut short loses the index written at its end)")
        count = int(capture.get(cv2.CAP_PROP_FRAME_COUNT) or 0)
        container_fps = float(capture.get(cv2.CAP_PROP_FPS) or 0.0)
        ok, first = capture.read()
        if not ok or first is None:
            raise VideoError(f"{location}: its first frame cannot be decoded (damaged, or a codec this OpenCV lacks)")
        if count <= 0:  # a stream without a frame count: count by decoding
            count = 1
            while capture.grab():
                count += 1
        elif count > 1:
            capture.set(cv2.CAP_PROP_POS_FRAMES, count - 1)
            ok, _ = capture.read()
            if not ok:
                raise VideoError(f"{location} is truncated or damaged: its container lists {count} frames, and frame "
                                 f"{count - 1} cannot be decoded")
    finally:
        capture.release()
    if fps is None:
        if not (0 < container_fps <= MAX_FPS) or container_fps != container_fps:
            raise VideoError(f"{location}'s container gives no usable frame rate ({container_fps:g}): give it with "
                             "--fps")
        rate, source = container_fps, "container"
    else:
        rate, source = float(fps), "given"
    return Video(location, str(path), "file", count, rate, source, int(first.shape[1]), int(first.shape[0]), (),
                 known or file_fingerprint(path))


def _convert(image: np.ndarray, mode: str) -> np.ndarray:
    if image.ndim == 2:
        return image if mode == "grey" else np.repeat(image[:, :, None], 3, axis=2)
    if image.shape[2] == 4:
        image = cv2.cvtColor(image, cv2.COLOR_BGRA2BGR)
    return cv2.cvtColor(image, cv2.COLOR_BGR2GRAY if mode == "grey" else cv2.COLOR_BGR2RGB)


class VideoFrames:
    """A video's frames as a sequence: ``len()``, ``frames[i]`` uint8 (H, W) grey or (H, W, 3) RGB (``mode``),
    decoded on demand. The last ``window`` frames read are kept, and reading forward decodes rather than seeks,
    so the access pattern of the per-frame work (frame i, then i + k, then i + 1, ...) decodes each frame once
    when ``window`` exceeds k. Picklable before first use (a Dask job carries one): it opens its file itself."""

    def __init__(self, video: Video, mode: str = "grey", window: int = 64):
        if mode not in FRAME_MODES:
            raise ValueError(f"mode must be one of {', '.join(FRAME_MODES)}, not {mode!r}")
        self.video, self.mode, self.window = video, mode, max(int(window), 2)
        self._capture = None
        self._next: int | None = None
        self._kept: OrderedDict[int, np.ndarray] = OrderedDict()

    def __getstate__(self) -> dict:
        return {"video": self.video, "mode": self.mode, "window": self.window}

    def __setstate__(self, state: dict) -> None:
        self.__init__(state["video"], state["mode"], state["window"])

    def __len__(self) -> int:
        return self.video.n_frames

    def __getitem__(self, index: int) -> np.ndarray:
        index = int(index)
        if not 0 <= index < self.video.n_frames:
            raise IndexError(f"frame {index} of {self.video.location}, which has {self.video.n_frames}")
        if index in self._kept:
            self._kept.move_to_end(index)
            return self._kept[index]
        image = self._read_file(index) if self.video.kind == "file" else self._read_frame_file(index)
        return image

    def _keep(self, index: int, image: np.ndarray) -> None:
        self._kept[index] = image
        while len(self._kept) > self.window:
            self._kept.popitem(last=False)

    def _read_frame_file(self, index: int) -> np.ndarray:
        path = Path(self.video.path) / self.video.names[index]
        image = cv2.imread(str(path), cv2.IMREAD_GRAYSCALE if self.mode == "grey" else cv2.IMREAD_COLOR)
        if image is None or image.size == 0:
            raise VideoError(f"frame {index} of {self.video.location} ({path.name}) cannot be decoded")
        if image.shape[:2] != (self.video.height, self.video.width):
            raise VideoError(f"frame {index} of {self.video.location} ({path.name}) is {image.shape[1]}x{image.shape[0]}, "
                             f"the first frame {self.video.width}x{self.video.height}")
        image = image if self.mode == "grey" else cv2.cvtColor(image, cv2.COLOR_BGR2RGB)
        self._keep(index, image)
        return image

    def _open(self) -> cv2.VideoCapture:
        if self._capture is None:
            self._capture = capture_of(self.video.path)
            if not self._capture.isOpened():
                raise VideoError(f"{self.video.location} cannot be opened any more (moved or changed?)")
            self._next = 0
        return self._capture

    def _seek(self, index: int) -> None:
        capture = self._open()
        capture.set(cv2.CAP_PROP_POS_FRAMES, index)
        if int(round(capture.get(cv2.CAP_PROP_POS_FRAMES))) != index:  # the seek landed elsewhere: decode from 0
            capture.release()
            self._capture = None
            capture = self._open()
            for _ in range(index):
                if not capture.grab():
                    raise VideoError(f"{self.video.location} ends before frame {index}: truncated or damaged")
        self._next = index

    def _read_file(self, index: int) -> np.ndarray:
        self._open()
        if self._next is None or index < self._next or index > self._next + max(self.window, SEEK_INSTEAD_OF_READING):
            self._seek(index)
        capture = self._capture
        while self._next <= index:
            ok, image = capture.read()
            if not ok or image is None:
                raise VideoError(f"frame {self._next} of {self.video.location} cannot be decoded: the file is damaged "
                                 f"or ends early (its container lists {self.video.n_frames} frames)")
            self._keep(self._next, _convert(image, self.mode))
            self._next += 1
        return self._kept[index]

    def close(self) -> None:
        """Release the decoder (reading again reopens it)."""
        if self._capture is not None:
            self._capture.release()
        self._capture, self._next = None, None
        self._kept.clear()
