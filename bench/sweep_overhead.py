"""What the platform costs: the same trials through `clutune sweep` and through a process pool of the same width.

Both sides do identical work: the trials the sweep's random sampler drew (same hyperparameters, run seeds and
scenario), each through ``ExperimentRun`` with the same oracles, trained and cached once before anything is timed.
The sweep is ``clutune.sweep`` as a researcher runs it (its documented defaults, local Ray started and shut down inside
the timing, MLflow on a sqlite file, Optuna's random sampler), with ASHA off so both sides run every request. The
pool is ``ProcessPoolExecutor(max_workers=concurrency)``: fresh interpreters (spawn, like Ray's workers) that
each load the data once and then run trials in the sweep's order, at the niceness Ray gives its workers. Per
concurrency the two run back to back, ``--repeats`` pairs, in the order sweep, pool, pool, sweep, ... so a drift
in the machine's speed favours neither side, and the ratio is read over all pairs together; every trial's
objective must agree between the two (the work is deterministic), or the benchmark fails. What a fresh
``clutune sweep`` process imports on top of a pool script (Ray Tune, MLflow, Optuna) is timed apart and shown in a
second ratio.

A profile pass then runs the sweep once more, at concurrency 1, with timers around the platform's steps: on the
driver (Ray start, Tune's result handling, MLflow writes, ...) and, through a Ray worker set-up hook, inside the
trial actors (``prepare``, object-store fetches, checkpoints, ``tune.report`` round trips).

Usage: python bench/sweep_overhead.py [--config mnist1d-agnostic-class] [--trials 8] [--concurrency 1,2]
       [--repeats 2] [--no-profile]
"""

from __future__ import annotations

import argparse
import contextlib
import functools
import importlib
import json
import multiprocessing
import os
import platform
import resource
import subprocess
import sys
import tempfile
import threading
import time
from collections.abc import Callable, Iterator
from concurrent.futures import ProcessPoolExecutor
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
from table import write_table

from clutune.core.config import Config, bare_overrides, load_config, resolve_config_path
from clutune.core.experiment import ExperimentRun, method_hparams, oracle_for, prepare
from clutune.platform.run.runtime import set_ray_env

METHOD = "ugclu"
OBJECTIVE = "kl_oracle_all"
GOAL = 1.10  # sweep wall over pool wall, at every concurrency, all pairs together
Record = Callable[[str, float, float], None]  # label, start (epoch seconds), seconds


# ---------------------------------------------------------------- the pool side


_WORKER: dict[str, Any] = {}


def _pool_init(config: dict[str, Any]) -> None:
    """A pool worker loads the data and builds the scenario once, as a sweep's trial actor does, and runs at the
    niceness Ray gives its workers (15 unless ``RAY_worker_niceness`` says otherwise): on a machine with other
    load, trials at different priorities would not be doing the same work in the same conditions."""
    os.nice(int(os.environ.get("RAY_worker_niceness", "15")))
    _WORKER["prep"] = prepare(load_config(config))


def _pool_trial(params: dict[str, Any]) -> float:
    """One trial as the sweep's trainable runs it: every run seed, the request mean of the objective, mean over
    seeds (``sweep.robust`` is 0 here). Oracles come from the cache, as a plain script would read them."""
    prep = _WORKER["prep"]
    config = prep.config
    hparams = method_hparams(config, METHOD, config.dataset.name, params)
    per_seed = []
    for seed in config.sweep.seeds:
        rows = ExperimentRun(prep, METHOD, hparams, seed).run()
        per_seed.append(np.nanmean([row[OBJECTIVE] for row in rows]))
    return float(np.mean(per_seed))


def run_pool(config: Config, trials: list[dict[str, Any]], width: int) -> tuple[float, list[float], float]:
    """Wall seconds (process start to shutdown), each trial's objective (in ``trials`` order) and the CPU seconds
    of this process and its workers (reaped at shutdown, so the kernel has added them to our children's)."""
    t0, cpu0 = time.perf_counter(), _cpu(resource.RUSAGE_SELF) + _cpu(resource.RUSAGE_CHILDREN)
    context = multiprocessing.get_context("spawn")
    with ProcessPoolExecutor(width, mp_context=context, initializer=_pool_init, initargs=(config.as_dict(),)) as pool:
        objectives = list(pool.map(_pool_trial, trials))
    cpu = _cpu(resource.RUSAGE_SELF) + _cpu(resource.RUSAGE_CHILDREN) - cpu0
    return time.perf_counter() - t0, objectives, cpu


# ---------------------------------------------------------------- the sweep side


def run_timed_sweep(
    config_path: str, sets: list[str], trials: int, width: int, uri: str, ray_init: Callable[[], None] | None = None
) -> tuple[float, pd.DataFrame, dict[str, float]]:
    """Wall seconds of ``clutune.sweep`` from the command's start to Ray's shutdown, its trials (creation order) and
    CPU seconds: the driver's, those of Ray's own processes (GCS, raylet, agents) and those of its workers.
    ``ray_init`` starts Ray inside the timing instead of ``clutune.sweep`` (the profile pass installs its hook)."""
    import ray

    import clutune

    t0, cpu0, descendants = time.perf_counter(), _cpu(resource.RUSAGE_SELF), DescendantsCpu()
    descendants.start()
    if ray_init is not None:
        ray_init()
    summary = clutune.sweep(
        config_path,
        method=METHOD,
        trials=trials,
        overrides=sets,
        concurrency=width,
        tracking_uri=uri,
        num_cpus=os.cpu_count(),
        log=_quiet,
    )
    cpu = {**descendants.stop(), "driver_cpu_s": _cpu(resource.RUSAGE_SELF) - cpu0}
    ray.shutdown()
    wall = time.perf_counter() - t0
    order = summary.trials["trial_id"].map(_creation_order(summary.sweep_dir))
    return wall, summary.trials.iloc[order.argsort()].reset_index(drop=True), cpu


def _cpu(who: int) -> float:
    usage = resource.getrusage(who)
    return usage.ru_utime + usage.ru_stime


class DescendantsCpu(threading.Thread):
    """CPU seconds of this process's descendants, Ray's own processes (GCS, raylet, agents) apart from its workers
    (``ray::...``, the trial actors): with every core training, whatever the platform computes is taken from the
    trials. Sampled from /proc every 2 s, as Tune stops its actors before the sweep returns: an actor counts with
    its last sample (what it used in its last 2 s, idle by then, is missed)."""

    def __init__(self) -> None:
        super().__init__(daemon=True)
        self.last: dict[int, tuple[str, float]] = {}  # pid -> (kind, CPU seconds)
        self.done = threading.Event()

    def run(self) -> None:
        while not self.done.wait(2.0):
            self.sample()

    def sample(self) -> None:
        procs: dict[int, tuple[int, float, Path]] = {}  # pid -> (parent pid, CPU seconds, /proc folder)
        for stat in Path("/proc").glob("[0-9]*/stat"):
            with contextlib.suppress(OSError, ValueError):
                text = stat.read_text()
                fields = text[text.rindex(")") + 2 :].split()  # from field 3 (state) on: ppid, ..., utime, stime
                procs[int(stat.parent.name)] = (
                    int(fields[1]),
                    (int(fields[11]) + int(fields[12])) / _TICKS,
                    stat.parent,
                )
        todo = [os.getpid()]
        while todo:
            parent = todo.pop()
            for pid, (ppid, seconds, folder) in procs.items():
                if ppid == parent:
                    todo.append(pid)
                    with contextlib.suppress(OSError):
                        title = (folder / "cmdline").read_bytes()  # empty once the process is exiting
                        kind = "ray_workers_cpu_s" if title.startswith(b"ray::") else "ray_daemons_cpu_s"
                        self.last[pid] = (self.last[pid][0] if not title and pid in self.last else kind, seconds)

    def stop(self) -> dict[str, float]:
        self.done.set()
        self.join()
        self.sample()
        out = {"ray_daemons_cpu_s": 0.0, "ray_workers_cpu_s": 0.0}
        for kind, seconds in self.last.values():
            out[kind] += seconds
        return out


_TICKS = os.sysconf("SC_CLK_TCK")


def _creation_order(sweep_dir: Path) -> dict[str, int]:
    """Trial id -> the order Tune created it in, from its folder name ``clu_trainable_<id>_<n>_<params>...``
    (ids are random): the pool runs the trials in the sweep's order, which decides how they pack on the workers."""
    parts = [folder.name.split("_") for folder in sweep_dir.glob("clu_trainable_*")]
    return {p[2]: int(p[3]) for p in parts}


def _quiet(*args: Any, **kwargs: Any) -> None:
    """The sweep's progress lines would interleave with the table; the benchmark prints its own."""


def trial_params(table: pd.DataFrame, keys: list[str]) -> list[dict[str, Any]]:
    return [{k: row[k].item() if hasattr(row[k], "item") else row[k] for k in keys} for _, row in table.iterrows()]


def check_same_work(
    table: pd.DataFrame, keys: list[str], trials: list[dict[str, Any]], objectives: list[float]
) -> float:
    """Largest |objective difference| between a sweep trial and the pool's run of the same hyperparameters; the
    sweep must have drawn exactly the benchmark's trials (its sampler is seeded)."""
    if trial_params(table, keys) != trials:
        raise SystemExit("the sweep drew other hyperparameters than the pool ran: the comparison would be unfair")
    diff = float(np.max(np.abs(table[f"objective_{OBJECTIVE}"].to_numpy() - np.array(objectives))))
    if not diff <= 1e-9:
        raise SystemExit(f"sweep and pool trials disagree by {diff:g}: they did not do the same work")
    return diff


# ---------------------------------------------------------------- the profile


def _wrap(owner: Any, name: str, label: str, record: Record) -> Callable[[], None]:
    """Times every call of ``owner.name``; returns the undo."""
    original = getattr(owner, name)

    @functools.wraps(original)
    def timed(*args: Any, **kwargs: Any) -> Any:
        start, t0 = time.time(), time.perf_counter()
        try:
            return original(*args, **kwargs)
        finally:
            # The driver's record and figure threads run beside Tune's loop: CPU, not the trials' waiting.
            off_path = threading.current_thread().name.startswith(("clutune-records", "clutune-figures"))
            record(f"{label} [background]" if off_path else label, start, time.perf_counter() - t0)

    setattr(owner, name, timed)
    return lambda: setattr(owner, name, original)


WORKER_SPANS = {  # (module, attribute path) -> label; timed inside every Ray worker of the profile pass
    ("clutune.platform.run.trainable", "clu_trainable"): "trial",
    ("clutune.core.experiment", "prepare"): "prepare: dataset load, scenario build",
    ("ray", "get"): "ray.get: trial context, oracle outputs",
    ("torch", "save"): "checkpoint: torch.save",
    ("ray.train._internal.storage", "StorageContext.persist_current_checkpoint"): "checkpoint: Tune's copy",
    ("ray.tune", "report"): "tune.report",
}


def _owner(module: str, path: str) -> tuple[Any, str]:
    owner = importlib.import_module(module)  # not getattr: clutune.platform.run.trainable is also a function
    *parents, name = path.split(".")
    for parent in parents:
        owner = getattr(owner, parent)
    return owner, name


def install_worker_spans(folder: str) -> None:
    """Ray worker set-up hook: each worker appends ``label, start, seconds`` lines to ``<folder>/<pid>.tsv``."""
    sink = open(Path(folder) / f"{os.getpid()}.tsv", "a", buffering=1)  # noqa: SIM115 (lives as long as the worker)

    def record(label: str, start: float, seconds: float) -> None:
        sink.write(f"{label}\t{start:.6f}\t{seconds:.6f}\n")

    for (module, path), label in WORKER_SPANS.items():
        _wrap(*_owner(module, path), label, record)


def read_worker_spans(folder: Path) -> pd.DataFrame:
    frames = [
        pd.read_csv(path, sep="\t", names=["label", "start", "seconds"]).assign(pid=path.stem)
        for path in folder.glob("*.tsv")
    ]
    return (
        pd.concat(frames, ignore_index=True) if frames else pd.DataFrame(columns=["label", "start", "seconds", "pid"])
    )


DRIVER_SPANS = {
    ("clutune.platform.search.sweep", "prepare_command"): "driver: prepare (validation before Ray starts)",
    ("clutune.platform.record.tracking", "SweepTracker.__init__"): "MLflow: experiment look-up",
    ("clutune.platform.record.tracking", "SweepTracker.start_parent"): "MLflow: parent run, config artifacts",
    ("clutune.platform.run.engine", "submit_oracles"): "oracles: cached outputs into the object store",
    ("ray.tune", "Tuner.fit"): "Tuner.fit",
    ("clutune.platform.record.tracking", "SweepTracker.child"): "MLflow: child run (per trial)",
    ("clutune.platform.record.tracking", "SweepTracker.log_request"): "MLflow: log_batch (per request)",
    ("clutune.platform.record.tracking", "SweepTracker.end_child"): "MLflow: end child run",
    ("clutune.core.results", "ResultStream.append"): "results stream: Arrow append + fsync",
    ("clutune.platform.run.engine", "EngineCallback.on_checkpoint"): "records drained at a trial checkpoint",
    ("clutune.platform.record.publish", "attach_runs"): "MLflow: figure attachments (per trial)",
    ("clutune.platform.run.engine", "EngineCallback.on_trial_result"): "engine callback, per result (all of it)",
    ("ray.tune.callback", "CallbackList.on_trial_result"): "all result callbacks (engine + Tune's loggers)",
    ("ray.tune.search.optuna", "OptunaSearch.on_trial_result"): "Optuna: intermediate value (journal file)",
    ("ray.tune.logger", "CSVLoggerCallback.log_trial_result"): "Tune's CSV logger (progress.csv)",
    ("ray.tune.logger", "JsonLoggerCallback.log_trial_result"): "Tune's JSON logger (result.json)",
    ("ray.tune.logger", "TBXLoggerCallback.log_trial_result"): "Tune's TensorBoard logger (event files)",
    ("ray.tune.execution.tune_controller", "TuneController.save_to_dir"): "Tune experiment-state snapshot",
    ("ray.tune.search.optuna", "OptunaSearch.save"): "snapshot part: pickling the Optuna searcher",
    ("clutune.platform.run.engine", "compact"): "results.parquet compaction",
    ("clutune.platform.search.sweep", "publish_sweep"): "figures: publish_sweep (all of it)",
    ("clutune.platform.record.publish", "run_plots"): "figures: per-run plots (matplotlib)",
    ("clutune.platform.record.publish", "optuna_html"): "figures: Optuna HTML views",
    ("clutune.platform.search.sweep", "_summarize"): "summary: tables, plot, MLflow artifacts",
    ("ray", "shutdown"): "Ray shutdown",
}


def check_spans() -> None:
    """Every timed step still exists under its name: a renamed one fails here, before any timing, rather than in
    the profile pass at the end."""
    for module, path in [*DRIVER_SPANS, *WORKER_SPANS]:
        try:
            getattr(*_owner(module, path))
        except (ImportError, AttributeError) as e:
            raise SystemExit(f"timed step {module}.{path} is gone ({e}): update DRIVER_SPANS / WORKER_SPANS") from None


@contextlib.contextmanager
def driver_spans(record: Record) -> Iterator[None]:
    undo = [_wrap(*_owner(module, path), label, record) for (module, path), label in DRIVER_SPANS.items()]
    try:
        yield
    finally:
        for restore in reversed(undo):
            restore()


def profile(config_path: str, sets: list[str], trials: int, uri: str, folder: Path) -> dict[str, Any]:
    """The sweep once more at concurrency 1, timed step by step; returns the breakdown (seconds per trial)."""
    import ray

    spans: list[tuple[str, float, float]] = []

    def record(label: str, start: float, seconds: float) -> None:
        spans.append((label, start, seconds))

    def ray_init() -> None:
        from clutune.platform.run.engine import LOCAL_RAY_SYSTEM_CONFIG

        def hook() -> None:  # a plain function: Ray names the hook it exports
            install_worker_spans(str(folder))

        t0 = time.perf_counter()
        ray.init(
            num_cpus=os.cpu_count(),
            include_dashboard=False,
            log_to_driver=False,
            runtime_env={"worker_process_setup_hook": hook},
            _system_config=LOCAL_RAY_SYSTEM_CONFIG,  # as the command starts it
        )
        record("Ray start (ray.init)", time.time(), time.perf_counter() - t0)

    with driver_spans(record):
        wall, _, cpu = run_timed_sweep(config_path, sets, trials, 1, uri, ray_init)
    driver = pd.DataFrame(spans, columns=["label", "start", "seconds"])
    return breakdown(driver, read_worker_spans(folder), wall, trials, cpu)


def _inside_trials(worker: pd.DataFrame) -> pd.DataFrame:
    """The worker spans that ran inside a trial (not the trial-context fetch before it)."""
    trials = worker[worker["label"] == "trial"]
    keep = []
    for _, span in worker.iterrows():
        mine = trials[trials["pid"] == span["pid"]]
        keep.append(bool(((mine["start"] <= span["start"]) & (span["start"] <= mine["start"] + mine["seconds"])).any()))
    return worker[keep]


def breakdown(
    driver: pd.DataFrame, worker: pd.DataFrame, wall: float, trials: int, cpu: dict[str, float]
) -> dict[str, Any]:
    """Seconds per trial of each platform step, the trials' own work, and what is left over (Tune's loop, actor
    start, waiting). ``tune.report`` is split into Tune's checkpoint copy and the wait for the driver."""
    total = lambda frame, label: float(frame.loc[frame["label"] == label, "seconds"].sum())  # noqa: E731
    calls = lambda frame, label: int((frame["label"] == label).sum())  # noqa: E731
    inside = _inside_trials(worker)
    trial_seconds = total(worker, "trial")
    platform_in_trial = sum(total(inside, label) for label in WORKER_SPANS.values() if label != "trial")
    rows = []
    for label in [*dict.fromkeys(driver["label"])]:
        rows.append({"where": "driver", "step": label, "calls": calls(driver, label), "seconds": total(driver, label)})
    copy = total(worker, "checkpoint: Tune's copy")
    for label in WORKER_SPANS.values():
        if label == "trial":
            continue
        seconds = total(inside, label) - (copy if label == "tune.report" else 0.0)
        step = "tune.report: wait for the driver's next request" if label == "tune.report" else label
        rows.append({"where": "trial actor", "step": step, "calls": calls(inside, label), "seconds": seconds})
    rows.append(
        {
            "where": "trial actor",
            "step": "training + evaluation (the pool's work)",
            "calls": trials,
            "seconds": trial_seconds - platform_in_trial,
        }
    )
    fit = total(driver, "Tuner.fit")
    starts = worker[worker["label"] == "trial"].sort_values("start")
    first = float(starts["start"].iloc[0] - driver.loc[driver["label"] == "Tuner.fit", "start"].iloc[0])
    rows.append(
        {
            "where": "driver",
            "step": "Tuner.fit to the first trial's start (Tune set-up, actor start)",
            "calls": 1,
            "seconds": first,
        }
    )
    rows.append(
        {
            "where": "driver",
            "step": "Tuner.fit outside trials (the line above, between trials, the end)",
            "calls": 1,
            "seconds": fit - trial_seconds,
        }
    )
    for row in rows:
        row["per_trial"] = row["seconds"] / trials
    return {"wall": wall, "trials": trials, **cpu, "steps": rows}


# ---------------------------------------------------------------- the report


def machine() -> str:
    model = next(
        (
            line.split(":", 1)[1].strip()
            for line in Path("/proc/cpuinfo").read_text().splitlines()
            if line.startswith("model name")
        ),
        platform.processor() or platform.machine(),
    )
    memory = os.sysconf("SC_PAGE_SIZE") * os.sysconf("SC_PHYS_PAGES") / 2**30
    load = ", ".join(f"{x:.2f}" for x in os.getloadavg())
    return (
        f"{os.cpu_count()} CPUs ({model}), {memory:.0f} GiB, Python {platform.python_version()}, load {load} at start"
    )


def report(payload: dict[str, Any]) -> list[str]:
    """sweep_overhead.md from the run's record (sweep_overhead.json)."""
    rows, prof, setting = payload["rows"], payload["profile"], payload
    lines = [
        f"`{' '.join(['python', *payload['command']])}`",
        "",
        f"{setting['machine']}, {setting['load_end']} at the end; config {payload['config']}, method {METHOD}, "
        f"{payload['trials']} trials of about "
        f"{setting['trial_seconds']:.0f} s each (pool wall x width / trials; one thread per trial), "
        f"sweep.checkpoint_every {setting['checkpoint_every']}, sweep.checkpoint_seconds "
        f"{setting['checkpoint_seconds']}, MLflow on sqlite, ASHA off, oracles cached before "
        "timing.",
        "",
        "| concurrency | pair | sweep wall (s) | pool wall (s) | sweep / pool | "
        f"(sweep + {setting['sweep_import_s']:.1f} s of imports) / pool | objectives equal (max diff) | "
        "CPU s: sweep (driver + Ray's processes) "
        "| CPU s: pool | CPU sweep / pool |",
        "|---|---|---|---|---|---|---|---|---|---|",
    ]
    for row in rows:
        with_imports = (row["sweep_s"] + setting["sweep_import_s"]) / row["pool_s"]
        lines.append(
            f"| {row['concurrency']} | {row['repeat'] + 1} | {row['sweep_s']:.1f} | {row['pool_s']:.1f} | "
            f"**{row['ratio']:.2f}** | "
            f"{with_imports:.2f} | yes ({row['max_diff']:.1g}) | {row['sweep_cpu_s']:.1f} ({row['driver_cpu_s']:.1f} "
            f"+ {row['ray_daemons_cpu_s'] + row['ray_workers_cpu_s']:.1f}) | {row['pool_cpu_s']:.1f} | "
            f"{row['cpu_ratio']:.2f} |"
        )
    lines += ["", "Per concurrency, all pairs together (sum of sweep walls / sum of pool walls):", ""]
    for width, ratio in totals(rows).items():
        lines.append(f"- concurrency {width}: **{ratio:.3f}**")
    if prof is not None:
        lines += [
            "",
            f"Profile (the sweep once more at concurrency 1, timers on; wall {prof['wall']:.1f} s; CPU s: driver "
            f"{prof['driver_cpu_s']:.1f}, Ray's processes {prof['ray_daemons_cpu_s']:.1f}, Ray workers "
            f"{prof['ray_workers_cpu_s']:.1f}). Seconds per trial:",
            "",
            "| where | step | calls | s per trial |",
            "|---|---|---|---|",
        ]
        lines += [f"| {r['where']} | {r['step']} | {r['calls']} | {r['per_trial']:.3f} |" for r in prof["steps"]]
    return lines


def rebuild(results: Path, out: Path) -> None:
    """sweep_overhead.md and sweep_overhead-summary.json (what docs/benchmarks.md quotes) from the run's record,
    sweep_overhead.json, alone."""
    payload = json.loads((results / "sweep_overhead.json").read_text())
    write_table(report(payload), out / "sweep_overhead.md")
    rows = payload["rows"]
    summary = {
        "command": " ".join(["python", *payload["command"]]),
        "config": payload["config"],
        "trials": payload["trials"],
        "trial_seconds": payload["trial_seconds"],
        "load_start": payload["machine"].split("load ")[-1].split(" at start")[0],
        "goal": GOAL,
        "widths": {
            str(width): {"pairs": [r for r in rows if r["concurrency"] == width], "ratio": ratio}
            for width, ratio in totals(rows).items()
        },
        "goal_met": all(ratio <= GOAL for ratio in totals(rows).values()),
        "profile": {
            "wall": payload["profile"]["wall"],
            "driver_cpu_s": payload["profile"]["driver_cpu_s"],
            "ray_daemons_cpu_s": payload["profile"]["ray_daemons_cpu_s"],
            "seconds": {r["step"]: r["seconds"] for r in payload["profile"]["steps"]},
            "calls": {r["step"]: r["calls"] for r in payload["profile"]["steps"]},
        }
        if payload["profile"]
        else None,
    }
    (out / "sweep_overhead-summary.json").write_text(json.dumps(summary, indent=1) + "\n")


def totals(rows: list[dict[str, Any]]) -> dict[int, float]:
    """Sweep ÷ pool per concurrency over every pair: the figure the goal (``GOAL``) is read against."""
    frame = pd.DataFrame(rows).groupby("concurrency")[["sweep_s", "pool_s"]].sum()
    return {int(width): float(row["sweep_s"] / row["pool_s"]) for width, row in frame.iterrows()}


def sweep_import_seconds() -> float:
    """What a fresh ``clutune sweep`` process imports on top of a pool script (Ray Tune, MLflow, Optuna), timed in
    fresh interpreters (best of three). The walls leave it out, so that every sweep is timed alike (the benchmark
    imports both stacks before timing); the table adds it back in its own ratio."""

    def seconds(statement: str) -> float:
        t0 = time.perf_counter()
        subprocess.run([sys.executable, "-c", statement], check=True)
        return time.perf_counter() - t0

    base = min(seconds("import clutune.core.experiment") for _ in range(3))
    return min(seconds("import clutune.core.experiment, clutune.platform.search.sweep") for _ in range(3)) - base


def warm_oracles(config: Config) -> None:
    """Train and cache every oracle of the scenario before anything is timed: both sides then read them."""
    prep = prepare(config)
    for k in range(len(prep.scenario)):
        oracle_for(prep, k)


def measure(args: argparse.Namespace, config_path: str, base: list[str], tmp: str) -> list[dict[str, Any]]:
    """Per concurrency and repeat, the sweep and the pool back to back (sides alternate from one pair to the
    next, so a drift in the machine's speed favours neither), and the check that both did the same work. The
    first sweep's trials are the ones every pool runs."""
    config = load_config(config_path, base)
    config.threads = 1  # a trial with sweep.trial_resources.cpu = 1 runs on one thread
    fixed = bare_overrides(args.sets)  # bare --set hyperparameters: the sweep fixes them for every trial
    rows: list[dict[str, Any]] = []
    trials: list[dict[str, Any]] = []
    keys: list[str] = []
    pair = 0
    for width in (int(c) for c in args.concurrency.split(",")):
        for repeat in range(args.repeats):
            uri = _mlflow_db(f"{tmp}/mlflow-{width}-{repeat}.db")
            sets = [*base, f"sweep.storage_path={tmp}/sweeps-{width}-{repeat}"]
            measured: dict[str, Any] = {"concurrency": width, "repeat": repeat}
            for side in ("sweep", "pool") if pair % 2 == 0 else ("pool", "sweep"):
                if side == "sweep":
                    measured["sweep_s"], table, cpu = run_timed_sweep(config_path, sets, args.trials, width, uri)
                    measured.update(cpu)
                    keys = keys or [c for c in table.columns if c not in TABLE_COLUMNS and not c.startswith(STATS)]
                    trials = trials or trial_params(table, keys)
                else:
                    measured["pool_s"], objectives, measured["pool_cpu_s"] = run_pool(
                        config, [{**fixed, **t} for t in trials], width
                    )
            pair += 1
            measured["max_diff"] = check_same_work(table, keys, trials, objectives)
            measured["ratio"] = measured["sweep_s"] / measured["pool_s"]
            parts = ("driver_cpu_s", "ray_daemons_cpu_s", "ray_workers_cpu_s")
            measured["sweep_cpu_s"] = sum(measured[k] for k in parts)
            measured["cpu_ratio"] = measured["sweep_cpu_s"] / measured["pool_cpu_s"]
            print(measured, flush=True)
            rows.append(measured)
    return rows


# The sweep's trials table: these (bookkeeping: the trial number, when it finished) and STATS, then the params.
TABLE_COLUMNS = ("trial_id", "number", "status", "requests_done", "finished_at")
STATS = ("objective_", "mean_", "std_")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--config", default="mnist1d-agnostic-class")
    parser.add_argument("--trials", type=int, default=8)
    parser.add_argument("--concurrency", default="1,2")
    parser.add_argument("--repeats", type=int, default=2, help="sweep/pool pairs per concurrency")
    parser.add_argument("--no-profile", action="store_true", help="skip the profile pass")
    parser.add_argument("--out", default="bench/results/sweep_overhead.md")
    parser.add_argument("--set", dest="sets", action="append", default=[], help="extra config overrides")
    args = parser.parse_args()
    check_spans()
    set_ray_env()
    out = Path(args.out).resolve()
    config_path = str(resolve_config_path(args.config).resolve())
    host = machine()
    # MLflow artifacts (./mlruns) and every other file of the runs stay in the temporary folder
    with tempfile.TemporaryDirectory() as tmp, contextlib.chdir(tmp):
        base = [f"oracle.cache_dir={tmp}/oracles", "sweep.asha=false", "sweep.sampler=random", "device=cpu", *args.sets]
        warm_oracles(load_config(config_path, base))
        # here, not at the top: the pool's workers import this file
        importlib.import_module("clutune.platform.search.sweep")
        rows = measure(args, config_path, base, tmp)
        prof = None
        if not args.no_profile:
            (Path(tmp) / "spans").mkdir()
            sets = [*base, f"sweep.storage_path={tmp}/sweeps-profile"]
            prof = profile(config_path, sets, args.trials, _mlflow_db(f"{tmp}/mlflow-profile.db"), Path(tmp) / "spans")
    sweep_config = load_config(config_path, base).sweep
    setting = {
        "machine": host,
        "load_end": "load " + ", ".join(f"{x:.2f}" for x in os.getloadavg()),
        "sweep_import_s": sweep_import_seconds(),
        "checkpoint_every": sweep_config.checkpoint_every,
        "checkpoint_seconds": sweep_config.checkpoint_seconds,
        "trial_seconds": rows[0]["pool_s"] * rows[0]["concurrency"] / args.trials,
    }
    payload = {
        "command": sys.argv,
        "config": args.config,
        "trials": args.trials,
        **setting,
        "rows": rows,
        "ratio_per_concurrency": totals(rows),
        "profile": prof,
    }
    out.with_suffix(".json").write_text(json.dumps(payload, indent=1) + "\n")
    write_table(report(payload), out)
    if out.name == "sweep_overhead.md":  # the summary the docs quote, beside the default report
        rebuild(out.parent, out.parent)


def _mlflow_db(path: str) -> str:
    """A tracking database that exists before the timing starts, like a researcher's ./mlflow.db: creating one
    (its schema migrations) is a one-time cost, not a cost of each sweep."""
    from mlflow.tracking import MlflowClient

    uri = f"sqlite:///{path}"
    MlflowClient(uri).search_experiments()
    return uri


if __name__ == "__main__":
    main()
