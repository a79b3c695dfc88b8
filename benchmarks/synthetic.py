"""Render speed of the synthetic clip renderer (ms per frame, one thread), by frame size and colour.

    .venv/bin/python benchmarks/synthetic.py
"""

import time

import cv2
import numpy as np

from merflow.tasks.synthetic.expressions import render_clip
from merflow.tasks.synthetic.faces import subject_identity


def main() -> None:
    cv2.setNumThreads(1)
    identity = subject_identity(0, 0)
    for size in ((120, 160), (240, 320), (480, 640)):
        for colour in (True, False):
            render_clip(identity, "surprise", 20, 3, 9, 16, size, colour, np.random.default_rng(0))  # warm-up
            started = time.perf_counter()
            for seed in range(5):
                render_clip(identity, "surprise", 20, 3, 9, 16, size, colour, np.random.default_rng(seed))
            per_frame = (time.perf_counter() - started) / 100 * 1000
            print(f"{size[1]}x{size[0]} {'colour' if colour else 'grey  '}: {per_frame:5.2f} ms/frame")


if __name__ == "__main__":
    main()
