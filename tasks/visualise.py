"""Pictures for people: one sample's features (onset crop, apex crop, difference, flow as HSV colour (hue =
direction, value = magnitude) and strain, side by side with labels), and a recognised video's timeline."""

from __future__ import annotations

import io

import cv2
import numpy as np

PANEL = 160  # pixels per picture in the strip
STRIP_ARRAYS = ("onset", "apex", "diff", "flow")  # the stored arrays (storage/features.py) a strip shows


def _label(image: np.ndarray, text: str) -> np.ndarray:
    image = image.copy()
    cv2.putText(image, text, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (0, 0, 0), 3, cv2.LINE_AA)
    cv2.putText(image, text, (4, 14), cv2.FONT_HERSHEY_SIMPLEX, 0.42, (255, 255, 255), 1, cv2.LINE_AA)
    return image


def _panel(rgb: np.ndarray) -> np.ndarray:
    return cv2.resize(rgb, (PANEL, PANEL), interpolation=cv2.INTER_NEAREST)


def flow_to_rgb(u: np.ndarray, v: np.ndarray, max_magnitude: float | None = None) -> np.ndarray:
    """Flow as colour: hue is the direction (the Middlebury convention), brightness the magnitude."""
    magnitude, angle = cv2.cartToPolar(u.astype(np.float32), v.astype(np.float32), angleInDegrees=True)
    scale = max_magnitude or float(magnitude.max()) or 1.0
    hsv = np.zeros(u.shape + (3,), np.uint8)
    hsv[..., 0] = (angle / 2).astype(np.uint8)
    hsv[..., 1] = 255
    hsv[..., 2] = np.clip(magnitude / scale * 255, 0, 255).astype(np.uint8)
    return cv2.cvtColor(hsv, cv2.COLOR_HSV2RGB)


def sample_strip(arrays: dict[str, np.ndarray], title: str | None = None) -> np.ndarray:
    """One RGB image: onset | apex | difference | flow | strain, for a sample's stored arrays; a title banner
    above it when title is given."""
    onset = arrays["onset"].transpose(1, 2, 0)
    apex = arrays["apex"].transpose(1, 2, 0)
    diff = arrays["diff"].transpose(1, 2, 0)
    peak = float(np.abs(diff).max()) or 1.0
    diff_rgb = np.clip(127.5 + diff / peak * 127.5, 0, 255).astype(np.uint8)
    u, v, magnitude, strain = arrays["flow"]
    strain_grey = np.clip(strain / (float(strain.max()) or 1.0) * 255, 0, 255).astype(np.uint8)
    strain_rgb = cv2.cvtColor(cv2.applyColorMap(strain_grey, cv2.COLORMAP_INFERNO), cv2.COLOR_BGR2RGB)
    panels = [
        _label(_panel(onset), "onset"),
        _label(_panel(apex), "apex"),
        _label(_panel(diff_rgb), f"apex-onset x{1 / peak:.1f}"),
        _label(_panel(flow_to_rgb(u, v)), f"flow max {float(magnitude.max()):.2f}px"),
        _label(_panel(strain_rgb), "strain"),
    ]
    strip = np.hstack(panels)
    if title:
        banner = np.full((22, strip.shape[1], 3), 255, np.uint8)
        cv2.putText(banner, title, (4, 16), cv2.FONT_HERSHEY_SIMPLEX, 0.5, (0, 0, 0), 1, cv2.LINE_AA)
        strip = np.vstack([banner, strip])
    return strip


def png_bytes(image: np.ndarray) -> bytes:
    """An RGB image encoded as PNG bytes (for an inline artifact, or `merflow show`'s file, which the CLI
    writes through storage/locations.py: nothing here writes)."""
    ok, encoded = cv2.imencode(".png", cv2.cvtColor(image, cv2.COLOR_RGB2BGR))
    if not ok:
        raise ValueError("PNG encoding failed")
    return encoded.tobytes()


def features_markdown(summary: dict, samples: list[tuple[str, dict]]) -> str:
    """The features flow's summary as markdown: a row per group, then each (key, arrays) of ``samples``
    as an embedded PNG strip (enough to see that faces and flow look right)."""
    import base64

    lines = [f"# Features in `{summary['store']}` (config {summary['config_hash']})", "",
             f"{summary['shards_computed']} shards computed, {summary['shards_skipped']} already done, "
             f"cluster up in {summary['cluster_start_seconds']} s, computed in {summary['compute_seconds']} s, "
             f"peak worker memory {summary['peak_worker_rss_mb']} MB", "",
             "| group | samples | quarantined | apex spotted | centre crops (no face) |", "|---|---|---|---|---|"]
    for name, info in summary["groups"].items():
        reasons = ", ".join(f"{k} {v}" for k, v in info["quarantined"].items()) or "-"
        lines.append(f"| {name} | {info['samples']} | {reasons} | {info['apex_spotted']} | "
                     f"{info['no_face_centre_crop']} |")
    for key, arrays in samples:
        encoded = base64.b64encode(png_bytes(sample_strip(arrays, key))).decode()
        lines += ["", f"**{key}**", "", f"![{key}](data:image/png;base64,{encoded})"]
    return "\n".join(lines)


# ------------------------------------------------------------------------------------------ a recognised video
CLASS_COLOURS = ("#d62728", "#2ca02c", "#1f77b4", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#7f7f7f", "#bcbd22")


def timeline_png(n_frames: int, fps: float, motion: np.ndarray, curves: dict[str, tuple[np.ndarray, float]],
                 intervals: list[dict], classes: tuple[str, ...], title: str = "") -> bytes:
    """A recognised video at a glance, as PNG bytes (matplotlib's Agg canvas, no display): above, the motion
    score of every frame (the mean ROI flow magnitude against frame i + k); below, each spotter's curve (what it
    thresholds: SOFTNet's smoothed score, the baseline's smoothed motion) and its threshold; spotted intervals
    shaded in both, coloured and labelled by class (grey: none). ``intervals``: dicts with start, end (frames),
    type and class."""
    from matplotlib.figure import Figure
    from matplotlib.patches import Patch

    seconds = np.arange(n_frames) / fps
    figure = Figure(figsize=(12, 4.2), dpi=100, layout="constrained")
    top, bottom = figure.subplots(2, 1, sharex=True, height_ratios=(1, 1.2))
    top.plot(seconds[:len(motion)], motion, color="#444444", linewidth=0.7)
    top.set_ylabel("motion score")
    for (kind, (curve, threshold)), style in zip(sorted(curves.items()), ("-", "--", ":")):
        line = bottom.plot(seconds[:len(curve)], curve, linewidth=0.8, linestyle=style, label=f"{kind} spotter")[0]
        if np.isfinite(threshold):
            bottom.axhline(threshold, color=line.get_color(), linewidth=0.6, linestyle=":", alpha=0.8)
    bottom.set_ylabel("spotter score")
    bottom.set_xlabel("seconds")
    colour = {c: CLASS_COLOURS[i % len(CLASS_COLOURS)] for i, c in enumerate(classes)}
    for item in intervals:
        shade = colour.get(item.get("class"), "#bbbbbb")
        for axis in (top, bottom):
            axis.axvspan(item["start"] / fps, (item["end"] + 1) / fps, color=shade, alpha=0.3, linewidth=0)
        label = item.get("class") or "?"
        top.annotate(f"{label}" + (" (M)" if item.get("type") == "macro" else ""),
                     ((item["start"] + item["end"] + 1) / 2 / fps, 1.0), xycoords=("data", "axes fraction"),
                     ha="center", va="bottom", fontsize=7, rotation=90 if len(intervals) > 12 else 0)
    handles = [Patch(color=colour[c], alpha=0.3, label=c) for c in classes] + [Patch(color="#bbbbbb", alpha=0.3,
                                                                                        label="no class")]
    bottom.legend(handles=bottom.get_legend_handles_labels()[0] + handles, fontsize=7, loc="upper right", ncol=2)
    top.set_title(title or f"{n_frames} frames at {fps:g} fps: {len(intervals)} intervals spotted", fontsize=9,
                  loc="left")
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png")
    return buffer.getvalue()


def interval_strip(arrays: dict[str, np.ndarray], title: str) -> np.ndarray:
    """An interval's onset, apex, difference, flow and strain (``sample_strip`` of its clip arrays), titled."""
    return sample_strip({name: arrays[name] for name in STRIP_ARRAYS}, title)
