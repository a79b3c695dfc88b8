"""Start-up benchmark: what a merflow command pays before (and around) its work, and what each way of giving
the flows a Prefect API costs (flows/local_server.py says which was chosen and why).

Measured in fresh processes, as a user runs them (medians of --repeat runs):

1. imports: Prefect, and each command's modules (``python -X importtime`` tells the rest);
2. the options for a flow command's Prefect API: a private server per command (what the CLI did before:
   cold, on a new PREFECT_HOME whose database is created, and warm), the shared local server found again,
   Prefect's API app started in the command's own process, and no orchestration (the plain functions);
3. a flow run's own bookkeeping: the ingest flow against a running server vs the same steps as plain
   functions, in one warm process (with and without flow run heartbeats);
4. end to end: `merflow ingest` of a 16-sample archive (the first command on a new PREFECT_HOME, which
   starts the shared server; then warm), `merflow catalog`, `merflow results runs`: wall time, the work
   (the same steps in a warm process) and the fixed cost (wall - work).

    .venv/bin/python benchmarks/startup.py [--repeat 5] [--out DIR]

On a shared machine the figures vary with its load: the script prints the load average beside them.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

PYTHON = sys.executable
MERFLOW = str(Path(sys.executable).parent / "merflow")


def load() -> str:
    return " ".join(f"{x:.1f}" for x in os.getloadavg())


def env_for(home: Path, **more) -> dict:
    """A private PREFECT_HOME, no configured API: the CLI's own case."""
    return {k: v for k, v in os.environ.items() if k != "PREFECT_API_URL"} | {
        "PREFECT_HOME": str(home), "PREFECT_SERVER_ANALYTICS_ENABLED": "false", "OMP_NUM_THREADS": "1", **more}


def timed(command: list[str], env: dict) -> tuple[float, float]:
    """(wall, CPU) seconds of a command: its CPU time (user + system, its waited-for children included, not
    the detached server's) varies far less with other processes' load than its wall time."""
    before = resource.getrusage(resource.RUSAGE_CHILDREN)
    started = time.perf_counter()
    done = subprocess.run(command, env=env, capture_output=True, text=True)
    wall = time.perf_counter() - started
    after = resource.getrusage(resource.RUSAGE_CHILDREN)
    if done.returncode:
        raise RuntimeError(f"{' '.join(command)} failed: {done.stdout[-2000:]} {done.stderr[-2000:]}")
    return wall, (after.ru_utime - before.ru_utime) + (after.ru_stime - before.ru_stime)


def python_seconds(code: str, env: dict) -> float:
    """What ``code`` prints as a number of seconds, run in a fresh interpreter."""
    done = subprocess.run([PYTHON, "-c", code], env=env, capture_output=True, text=True)
    if done.returncode:
        raise RuntimeError(done.stderr[-3000:])
    return float(done.stdout.strip().splitlines()[-1])


def median(values) -> str:
    return f"{statistics.median(values):.2f}"


IMPORT = "import time; t = time.perf_counter(); import {module}; print(time.perf_counter() - t)"

# The in-process option: Prefect's API app started in this process (what a PrefectClient given the app runs).
IN_PROCESS = """
import time, asyncio
t = time.perf_counter()
from asgi_lifespan import LifespanManager
from prefect.server.api.server import create_app
app = create_app(ephemeral=True)
started = []
async def main():
    async with LifespanManager(app, startup_timeout=300, shutdown_timeout=60):
        started.append(time.perf_counter() - t)
        await asyncio.sleep(1)  # its services' start: stopping them at once fails
try:
    asyncio.run(main())
except Exception:  # its shutdown: not what is measured
    pass
print(started[0])
"""

PRIVATE = """
import time
from merflow.flows import local_server
from pathlib import Path
t = time.perf_counter()
process, url = local_server.start_server(Path({folder!r}))
started = time.perf_counter() - t
local_server.stop_process(process)
print(started)
"""

FIND = """
import time
t = time.perf_counter()
from merflow.flows.local_server import local_api
import prefect.settings  # imported by every flow command anyway
t = time.perf_counter()
with local_api():
    found = time.perf_counter() - t
print(found)
"""

# The ingest flow against the running server vs the same steps as plain functions, in one warm process.
FLOW = """
import json, shutil, statistics, time, sys
from merflow.flows.ingest import ingest_flow, prepare
from merflow.flows.local_server import local_api
from merflow.storage import catalog
from merflow.tasks import ingest
source, out, repeat = sys.argv[1], sys.argv[2], int(sys.argv[3])

def plain(where):
    prepared = prepare(source, where)
    config = ingest.IngestConfig()
    datasets, samples, problems = ingest.read(prepared, config)
    catalog.merge_source(where, ingest.source_row(prepared, datasets, config), samples, problems)
    return catalog.summary(where)

def clock(call):
    times = []
    for i in range(repeat + 1):
        shutil.rmtree(out, ignore_errors=True)
        t = time.perf_counter(); call(out); times.append(time.perf_counter() - t)
    return statistics.median(times[1:])  # the first warms the imports up

work = clock(plain)
with local_api():
    flow = clock(lambda where: ingest_flow(sources=[source], out=where))
from prefect.settings import PREFECT_FLOWS_HEARTBEAT_FREQUENCY, temporary_settings
with local_api(), temporary_settings(updates={PREFECT_FLOWS_HEARTBEAT_FREQUENCY: 180}):
    beating = clock(lambda where: ingest_flow(sources=[source], out=where))
print(json.dumps({"work": work, "flow": flow, "flow_heartbeats": beating}))
"""

# The catalog and results commands' work in a warm process.
WORK = """
import json, statistics, time, sys
from merflow.storage import catalog, queries, results
where, res, repeat = sys.argv[1], sys.argv[2], int(sys.argv[3])
def clock(call):
    times = []
    for i in range(repeat + 1):
        t = time.perf_counter(); call(); times.append(time.perf_counter() - t)
    return statistics.median(times[1:])
print(json.dumps({"catalog": clock(lambda: (catalog.summary(where), catalog.read_quarantine(where))),
                  "results": clock(lambda: [results.read_table(res, t) for t in ("runs", "trials")])}))
"""


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--repeat", type=int, default=5)
    parser.add_argument("--out", type=Path, default=None)
    args = parser.parse_args()
    out = args.out or Path(tempfile.mkdtemp(prefix="merflow-startup-"))
    repeat = args.repeat
    from merflow.configs.synth import SynthConfig
    from merflow.flows import local_server
    from merflow.tasks.synthetic import synthesize

    archive = synthesize(SynthConfig("casme2", subjects=4, samples_per_subject=4, archive="zip", seed=1, scale=0.2),
                         out / "archive")
    base_env = env_for(out / "no-home")
    print(f"# merflow start-up, {repeat} runs each (medians), load average {load()}, in {out}")

    print("\n## imports (fresh interpreter, seconds)")
    for module in ("prefect.main", "merflow.flows.cli.parser", "merflow.storage.catalog", "merflow.flows.ingest",
                   "merflow.flows.features", "merflow.flows.train"):
        print(f"{module:32} {median(python_seconds(IMPORT.format(module=module), base_env) for _ in range(repeat))}")

    print(f"\n## a flow command's Prefect API, per option (seconds; load {load()})")
    cold_home = out / "home-cold"
    first = timed([MERFLOW, "ingest", str(archive), "--out", str(out / "cat-first")], env_for(cold_home))
    folder = cold_home / local_server.FOLDER
    private_home = out / "home-private"
    private_folder = private_home / local_server.FOLDER
    private_folder.mkdir(parents=True)
    cold = python_seconds(PRIVATE.format(folder=str(private_folder)), env_for(private_home))
    warm = [python_seconds(PRIVATE.format(folder=str(private_folder)), env_for(private_home)) for _ in range(repeat)]
    in_process = [python_seconds(IN_PROCESS, env_for(private_home)) for _ in range(repeat)]
    found = [python_seconds(FIND, env_for(cold_home)) for _ in range(repeat)]
    print(f"private server per command (before): {cold:.2f} cold (new PREFECT_HOME), {median(warm)} warm")
    print(f"Prefect's API app in the command's process: {median(in_process)} (server imports and start-up)")
    print(f"shared local server, found again (chosen): {median(found)}; started once: see the first ingest below")
    print("no orchestration: 0 (and no run records, logs or artifacts; two code paths)")

    print(f"\n## the ingest flow's bookkeeping, one warm process (seconds; load {load()})")
    flow = json.loads(subprocess.run([PYTHON, "-c", FLOW, str(archive), str(out / "cat-flow"), str(repeat)],
                                     env=env_for(cold_home), capture_output=True, text=True, check=True).stdout
                      .strip().splitlines()[-1])
    print(f"plain functions {flow['work']:.2f} | flow {flow['flow']:.2f} (heartbeats off, as the local server runs "
          f"flows) | flow with heartbeats {flow['flow_heartbeats']:.2f}")

    print(f"\n## end to end, a fresh process per command (seconds; load {load()})")
    (out / "results").mkdir()
    work = json.loads(subprocess.run([PYTHON, "-c", WORK, str(out / "cat-first"), str(out / "results"), str(repeat)],
                                     env=base_env, capture_output=True, text=True, check=True).stdout
                      .strip().splitlines()[-1])
    ingest_runs = []
    for _ in range(repeat):
        shutil.rmtree(out / "cat-warm", ignore_errors=True)
        ingest_runs.append(timed([MERFLOW, "ingest", str(archive), "--out", str(out / "cat-warm")], env_for(cold_home)))
    catalog_runs = [timed([MERFLOW, "catalog", str(out / "cat-first")], base_env) for _ in range(repeat)]
    results_runs = [timed([MERFLOW, "results", "runs", "--results", str(out / "results")], base_env)
                    for _ in range(repeat)]
    print("| command | wall | CPU | work (warm process) | fixed: wall - work | fixed: CPU - work |")
    print("|---|---|---|---|---|---|")
    for label, runs, seconds in (
            ("ingest, first on a new PREFECT_HOME (starts the server)", [first], flow["work"]),
            ("ingest, server running", ingest_runs, flow["work"]),
            ("catalog", catalog_runs, work["catalog"]), ("results runs", results_runs, work["results"])):
        wall, cpu = statistics.median(r[0] for r in runs), statistics.median(r[1] for r in runs)
        print(f"| {label} | {wall:.2f} | {cpu:.2f} | {seconds:.2f} | {wall - seconds:.2f} | {cpu - seconds:.2f} |")
    print(f"(load average at the end {load()})")
    local_server.stop(folder)
    if args.out is None:
        shutil.rmtree(out, ignore_errors=True)


if __name__ == "__main__":
    main()
