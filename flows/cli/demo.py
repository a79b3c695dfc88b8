"""`merflow demo`: the whole chain on the embedded synthetic default, calling the flows directly with typed
configurations: synthesize every dataset small, ingest, compute features on a local Dask cluster, draw one
sample, search shots and α with Ray Tune over LOSO on CASME II, and print the result tables."""

from __future__ import annotations

import argparse
import time
from pathlib import Path

from merflow.flows.cli.commands import draw_sample, search
from merflow.flows.cli.render import console, print_catalog_summary, print_features_summary, progress
from merflow.flows.cli.results import print_results_summary

DEMO_DATASETS = {  # dataset -> (subjects, samples): every dataset and quirk appears; CASME II at its real
    # size, so that LOSO has 26 folds to learn from (6 subjects leave too little to rise above chance)
    "casme2": (26, 255), "samm": (5, 25), "smic": (4, 24), "casme": (4, 20), "casme_sq": (4, 18), "ckplus": (6, 30),
    "casme3": (4, 24),
}
DEMO_OUT = Path("demo")
DEMO_SEED = 0
DEMO_SCALE = 0.25   # frames a quarter of the real datasets' size
DEMO_SIZE = 28      # 28x28 crops (STSTNet's size): a search of 52 trials then fits in minutes on 2 cores
DEMO_RUN = "demo"
# A small search with a short schedule: the demo shows the whole chain, not the accuracy a full schedule
# reaches (benchmarks/README.md has that).
DEMO_SHOTS = (1, 3)
DEMO_SCHEDULE = {"macro_epochs": 10, "pretrain_epochs": 15, "meta_epochs": 3, "batches_per_epoch": 8}


def cmd_demo(args: argparse.Namespace) -> int:
    """The embedded default: synthesize every dataset small, ingest them into one catalog, compute
    their features (28x28) on a local Dask cluster, draw one sample, and search shots and α with Ray
    Tune over LOSO on CASME II (26 subjects)."""
    from merflow.configs.synth import ARCHIVE_FORMATS, SynthConfig
    from merflow.configs.train import TrainConfig
    from merflow.flows.features import features_flow
    from merflow.flows.ingest import ingest_flow
    from merflow.flows.parameters import SEARCH_ALPHAS
    from merflow.storage import catalog
    from merflow.tasks.synthetic import output_path, synthesize

    out = Path(args.out)
    archives = []
    with progress() as bar:
        for index, (name, (subjects, samples)) in enumerate(DEMO_DATASETS.items()):
            # Mix the formats users meet: zip, tar.gz, and a plain folder.
            config = SynthConfig(dataset=name, subjects=subjects, samples=samples, seed=args.seed, scale=args.scale,
                                 archive=ARCHIVE_FORMATS[index % len(ARCHIVE_FORMATS)])
            path = output_path(config, out / "archives")
            if not path.exists():
                job = bar.add_task(f"synth {name}", total=config.total)
                synthesize(config, out / "archives", progress=lambda n, job=job: bar.advance(job, n))
            archives.append(str(path))
    started = time.perf_counter()
    result = ingest_flow(sources=archives, out=str(out / "catalog"))
    print_catalog_summary(result)
    console.print(f"ingest took {time.perf_counter() - started:.1f} s; catalog in {out / 'catalog'}", markup=False)

    started = time.perf_counter()
    features = features_flow(catalog_dir=str(out / "catalog"), store=str(out / "features.zarr"), size=DEMO_SIZE)
    print_features_summary(features)
    console.print(f"features took {time.perf_counter() - started:.1f} s; store in {out / 'features.zarr'}",
                  markup=False)
    key = next(k for k in catalog.read_samples(out / "catalog")["sample_key"] if k.startswith("casme2/"))
    draw_sample(str(out / "features.zarr"), key, out / "sample.png")
    console.print(f"one sample drawn in {out / 'sample.png'}; try: merflow show {key} --store {out / 'features.zarr'} "
                  "--out sample.png", markup=False)

    config = TrainConfig.from_recipe(TrainConfig().recipe, seed=args.seed, **DEMO_SCHEDULE)
    status = search(str(out / "results"), catalog_dir=str(out / "catalog"), store=str(out / "features.zarr"),
                    dataset="casme2", shots=DEMO_SHOTS, scheduler="fifo", config=config, run=DEMO_RUN)
    print_results_summary(str(out / "results"), DEMO_RUN)
    console.print(f"The demo searched {len(DEMO_SHOTS)} numbers of shots x {len(SEARCH_ALPHAS)} values of α on "
                  f"{DEMO_DATASETS['casme2'][0]} synthetic subjects with a short schedule, to show the chain. Results: "
                  f"{out / 'results'} (query them with `merflow results query \"select * from metrics limit 5\" "
                  f"--results {out / 'results'}`); plots: {out / 'results' / 'plots' / DEMO_RUN}.", markup=False)
    return status
