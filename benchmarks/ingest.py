"""Ingest benchmark: a CASME II-size synthetic set (26 subjects, 255 samples) through the ingest flow.

Prints the time to synthesize, the flow's wall time (ephemeral Prefect API included) and the
same work without Prefect (fingerprint + unpack + adapters + catalog write), for each archive format.

    .venv/bin/python benchmarks/ingest.py [--scale 0.5] [--out /tmp/merflow-bench]
"""

from __future__ import annotations

import argparse
import shutil
import tempfile
import time
from pathlib import Path


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--scale", type=float, default=0.5, help="frame size relative to CASME II's 640x480")
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()

    from prefect import flow

    from merflow.configs.synth import SynthConfig
    from merflow.flows.ingest import ingest_flow, prepare
    from merflow.storage import catalog
    from merflow.tasks import ingest
    from merflow.tasks.synthetic import synthesize

    out = args.out or Path(tempfile.mkdtemp(prefix="merflow-bench-"))
    print(f"CASME II-size synthetic set, scale {args.scale}, in {out}")
    started = time.perf_counter()
    flow(lambda: None, name="warm-up")()  # the ephemeral Prefect API starts once per process
    print(f"Prefect ephemeral API start and first (empty) flow run: {time.perf_counter() - started:.1f} s")
    for fmt in ("zip", "tar.gz", "none"):
        started = time.perf_counter()
        source = synthesize(SynthConfig("casme2", subjects=26, samples=255, archive=fmt, seed=0, scale=args.scale),
                            out / f"archives-{fmt}")
        synth_s = time.perf_counter() - started
        size = sum(p.stat().st_size for p in source.rglob("*")) if source.is_dir() else source.stat().st_size

        started = time.perf_counter()
        result = ingest_flow(sources=[str(source)], out=str(out / f"flow-{fmt}"))
        flow_s = time.perf_counter() - started
        started = time.perf_counter()
        ingest_flow(sources=[str(source)], out=str(out / f"flow-{fmt}"))
        rerun_s = time.perf_counter() - started

        started = time.perf_counter()
        plain = out / f"plain-{fmt}"
        prepared = prepare(str(source), plain)
        config = ingest.IngestConfig()
        datasets, samples, problems = ingest.read(prepared, config)
        catalog.merge_source(plain, ingest.source_row(prepared, datasets, config), samples, problems)
        plain_s = time.perf_counter() - started
        print(f"{fmt:>7}: {size / 2**20:6.1f} MB, synth {synth_s:5.1f} s | flow {flow_s:5.1f} s "
              f"({result['samples']} samples, {result['quarantined']} quarantined) | rerun {rerun_s:4.1f} s "
              f"| without Prefect {plain_s:5.1f} s")
    if args.out is None:
        shutil.rmtree(out)


if __name__ == "__main__":
    main()
