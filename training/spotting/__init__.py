"""Spotting in long videos, pure: per-frame scores in, intervals out, and how they are scored.

- ``intervals.py``: SOFTNet's window k, pseudo-labels, smoothing, the threshold, peaks and runs as intervals;
- ``baseline.py``: the spotter that learns nothing (ROI flow magnitude, a threshold and length filters);
- ``softnet.py``: SOFTNet, the three-stream shallow network, in plain torch;
- ``loso.py``: leave-one-subject-out over long videos, every setting chosen on training subjects;
- ``metrics.py``: the MEGC spotting metric and the STRS evaluator (the official one's port and a corrected one);
- ``recognise.py``: spot-then-recognise, the classifier of spotted intervals.

Nothing here reads a store: the per-frame arrays come in through a loader the flow hands over
(flows/spotting.py), as training/'s other modules get theirs.
"""
