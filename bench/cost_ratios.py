"""Cost of each request against the oracle retrain it stands in for, in sample passes, at the shipped CIFAR presets.

Sample passes (forward + backward, what ``samples_processed`` counts) are deterministic in count: they follow
from the request sizes, the buffer's size and the hyperparameters, never from the data's values. So the table
is counted analytically from the presets at CIFAR-10's real composition (50,000 training images, 5,000 per
class) by :func:`request_samples`, which replays the stream through the real reservoir buffer (ids only) and
applies each method's step schedule. A tiny real run confirms the count model: the preset's stream on random
pixels in the real CIFAR-10 format (``bench/fake_cifar10.py``, 1,000 training images) with short budgets,
where every measured ``samples_processed`` and ``oracle_samples_processed`` must equal the model's count. The
same run times ugclu's learn requests against er's.

Writes bench/results/cost_ratios.json (one record per preset, method and request, plus the machine) and
bench/results/cost_ratios.md. Usage: python bench/cost_ratios.py [--out bench/results]
"""

from __future__ import annotations

import argparse
import json
import math
import platform
import subprocess
import sys
import tempfile
from pathlib import Path
from typing import Any

import torch
from table import write_table

from clutune.clu.buffer import ReservoirBuffer
from clutune.core.config import Config, load_config
from clutune.core.experiment import method_hparams, prepare, run_experiment
from clutune.core.scenario_generator import scenario_requests
from clutune.core.scenarios import Scenario, build_scenario

METHODS = ("ugclu", "sfron", "er", "finetune")
PRESETS = ("cifar10-agnostic-class", "cifar10-random")
CIFAR_TRAIN, CIFAR_CLASSES = 50_000, 10
TINY_TRAIN = 1000
# Short budgets for the real run: the count model must hold for any budget, so these only need to be cheap.
TINY = {
    "ugclu": {"epochs_per_learn": 3, "iters_per_unlearn": 6, "buffer_size": 300},
    "sfron": {"epochs_per_learn": 2, "iters_per_unlearn": 23, "buffer_size": 300},
    "er": {"epochs_per_learn": 2, "iters_per_unlearn": 23, "buffer_size": 300},
    "finetune": {"epochs_per_learn": 2, "iters_per_unlearn": 23},
}
GOAL_UNLEARN = 1 / 20  # an ugclu unlearn request: at most this share of its oracle's sample passes
GOAL_WALL = 0.10  # ugclu / er learn wall-time ratio within 10% of their sample-pass ratio


def cycled(n: int, batch: int, batches: int) -> int:
    """Samples in the first ``batches`` batches of reshuffled passes over ``n`` ids (the last batch of a pass
    is short)."""
    per_pass = math.ceil(n / batch)
    return (batches // per_pass) * n + (batches % per_pass) * batch


def request_samples(method: str, hp: Any, kind: str, n: int, buffer_len: int) -> int:
    """Sample passes of one request: ``n`` ids learned or unlearned, ``buffer_len`` entries in the buffer when its
    training starts (after the purge of an unlearn request, before the reservoir takes D_L)."""
    b, replay = hp.batch_size, min(hp.batch_size, buffer_len)
    if kind == "learn":
        steps = hp.epochs_per_learn * math.ceil(n / b)
        task = hp.epochs_per_learn * n
        if method == "ugclu":
            mask = n + buffer_len if hp.use_mask and buffer_len else 0
            return mask + task + steps * hp.K_in * replay
        if method in ("sfron", "er"):
            return task + steps * replay
        return task
    if method == "ugclu":
        mask = n + buffer_len if hp.use_mask and buffer_len else 0
        return mask + cycled(n, b, hp.iters_per_unlearn) + hp.iters_per_unlearn * hp.K_in * replay
    if method == "sfron":
        forget = hp.alpha0 > 0
        mask = n + buffer_len if forget and hp.use_mask and buffer_len else 0
        forget_steps = math.ceil(hp.iters_per_unlearn / hp.forget_freq) if forget else 0
        return mask + cycled(n, b, forget_steps) + hp.iters_per_unlearn * replay
    ascent = hp.unlearn_lr != 0 and hp.iters_per_unlearn != 0
    return cycled(n, b, hp.iters_per_unlearn) if ascent else 0


def counted_stream(method: str, hp: Any, scenario: Scenario, seed: int, oracle_epochs: int) -> list[dict[str, Any]]:
    """Per request: the count model's sample passes and the oracle's, the buffer replayed exactly as the method's
    (same capacity, seed and order of offers and purges)."""
    capacity = getattr(hp, "buffer_size", 0)
    buffer = ReservoirBuffer(capacity, seed=seed)
    out = []
    for r in scenario.requests:
        if r.kind == "unlearn":
            buffer.purge(r.ids)
        samples = request_samples(method, hp, r.kind, len(r.ids), len(buffer) if capacity else 0)
        if r.kind == "learn" and capacity:
            buffer.add(r.ids)
        oracle = oracle_epochs * int(scenario.owned(r.index).sum())
        out.append({"request": r.index, "kind": r.kind, "samples": samples, "oracle_samples": oracle})
    return out


def cifar_scenario(config: Config) -> Scenario:
    """The preset's stream over CIFAR-10's real composition; only labels matter to counts."""
    labels = torch.arange(CIFAR_TRAIN) % CIFAR_CLASSES
    cfg = config.scenario
    requests = scenario_requests(cfg, labels, CIFAR_CLASSES)
    return build_scenario(requests, labels, CIFAR_CLASSES, cfg.classes_per_task, cfg.tasks, cfg.seed)


def preset_records() -> list[dict[str, Any]]:
    records = []
    for preset in PRESETS:
        config = load_config(preset)
        scenario = cifar_scenario(config)
        for method in METHODS:
            hp = method_hparams(config, method, "cifar10")
            for rec in counted_stream(method, hp, scenario, config.seed, config.oracle.epochs):
                ratio = rec["samples"] / rec["oracle_samples"]
                records.append({"preset": preset, "method": method, **rec, "ratio": ratio})
    return records


def tiny_run(root: Path) -> dict[str, Any]:
    """The agnostic-class preset's stream on 1,000 random CIFAR-format images, SmallCNN, short budgets: measured
    rows against the count model, and ugclu's learn wall time against er's."""
    fake = Path(__file__).with_name("fake_cifar10.py")
    subprocess.run([sys.executable, str(fake), str(root), "--train", str(TINY_TRAIN), "--test", "200"], check=True)
    sets = [f"dataset.root={root}", "model.name=cnn", "oracle.epochs=2", f"oracle.cache_dir={root / 'oracles'}"]
    config = load_config(PRESETS[0], [*sets, "probe_size=0", "threads=1"])
    prep = prepare(config)
    mismatches, rows_by_method = [], {}
    for method in METHODS:
        hp = method_hparams(config, method, "cifar10", TINY[method])
        rows = run_experiment(prep, method, hp, seed=0)
        counted = counted_stream(method, hp, prep.scenario, 0, config.oracle.epochs)
        for row, want in zip(rows, counted, strict=True):
            got = (row["samples_processed"], row["oracle_samples_processed"])
            if got != (want["samples"], want["oracle_samples"]):
                mismatches.append({"method": method, "request": row["request"], "measured": got, "counted": want})
        rows_by_method[method] = rows
    return {"mismatches": mismatches, "wall": learn_wall_ratio(rows_by_method["ugclu"], rows_by_method["er"])}


def learn_wall_ratio(ugclu: list[dict[str, Any]], er: list[dict[str, Any]]) -> dict[str, float]:
    """Summed over the learn requests where both replay (the buffer is not empty: not the first request)."""
    pairs = [(u, e) for u, e in zip(ugclu, er, strict=True) if u["kind"] == "learn" and u["request"] > 0]
    seconds = sum(u["seconds"] for u, _ in pairs) / sum(e["seconds"] for _, e in pairs)
    samples = sum(u["samples_processed"] for u, _ in pairs) / sum(e["samples_processed"] for _, e in pairs)
    return {"seconds_ratio": seconds, "samples_ratio": samples, "seconds_over_samples": seconds / samples}


def machine() -> str:
    lines = Path("/proc/cpuinfo").read_text().splitlines()
    cpu = next((line.split(":", 1)[1].strip() for line in lines if "model name" in line), platform.processor())
    gpu = torch.cuda.get_device_name(0) if torch.cuda.is_available() else "no GPU"
    return f"{cpu}, {torch.get_num_threads()} torch threads, {gpu}, torch {torch.__version__}, {platform.platform()}"


def goals(records: list[dict[str, Any]], wall: dict[str, float]) -> list[str]:
    """The issue's goals, each stated with its numbers and whether it is met."""
    lines = []
    worst = max((r for r in records if r["method"] == "ugclu" and r["kind"] == "unlearn"), key=lambda r: r["ratio"])
    met = "met" if worst["ratio"] <= GOAL_UNLEARN else "NOT met"
    lines.append(
        f"- ugclu unlearn <= 1/20 of its oracle retrain: {met}; worst {worst['ratio']:.4f}"
        f" (1/{1 / worst['ratio']:.1f}), {worst['preset']} request {worst['request']}"
    )
    learn_ratios = learn_sample_ratios(records)
    k_in = method_hparams(load_config(PRESETS[0]), "ugclu", "cifar10").K_in
    worst_learn = max(learn_ratios.values())
    met = "met" if worst_learn <= 1 + k_in else "NOT met"
    lines.append(f"- ugclu learn <= (1 + K_in) = {1 + k_in} x er's sample passes: {met}; worst {worst_learn:.2f}")
    off = abs(wall["seconds_over_samples"] - 1)
    met = "met" if off <= GOAL_WALL else "NOT met"
    lines.append(
        f"- ugclu / er learn wall time within 10% of the sample-pass ratio: {met} on this machine's tiny run"
        f" (seconds ratio {wall['seconds_ratio']:.2f}, sample ratio {wall['samples_ratio']:.2f}, off by {off:.0%})"
    )
    return lines


def learn_sample_ratios(records: list[dict[str, Any]]) -> dict[tuple[str, int], float]:
    """ugclu / er sample passes per learn request of each preset."""
    by = {(r["preset"], r["method"], r["request"]): r for r in records}
    return {
        (p, k): by[(p, "ugclu", k)]["samples"] / by[(p, "er", k)]["samples"]
        for (p, m, k), r in by.items()
        if m == "ugclu" and r["kind"] == "learn"
    }


def table(records: list[dict[str, Any]], wall: dict[str, float], host: str, mismatches: int) -> list[str]:
    lines = [
        "# Cost per request against its oracle retrain (sample passes)",
        "",
        f"Counted from the shipped presets at CIFAR-10's composition (50,000 images, 5,000 per class); the count model "
        f"matched every measured request of a tiny real run ({mismatches} mismatches). Machine: {host}.",
        "",
        "| preset | method | request | kind | samples | oracle samples | samples / oracle |",
        "|---|---|---|---|---|---|---|",
    ]
    for r in records:
        lines.append(
            f"| {r['preset']} | {r['method']} | {r['request']} | {r['kind']} | {r['samples']:,} | "
            f"{r['oracle_samples']:,} | {r['ratio']:.4f} |"
        )
    return [*lines, "", "Goals:", "", *goals(records, wall)]


def rebuild(results: Path, out: Path) -> None:
    """cost_ratios.md and cost_ratios-summary.json (what docs/gpu.md quotes) from the counts and the tiny run's
    timings in ``results``/cost_ratios.json alone."""
    payload = json.loads((results / "cost_ratios.json").read_text())
    records, tiny = payload["records"], payload["tiny_run"]
    lines = table(records, tiny["wall"], payload["machine"], len(tiny["mismatches"]))
    write_table([*lines, "", "Command: `python bench/cost_ratios.py`"], out / "cost_ratios.md")
    unlearn = [r for r in records if r["method"] == "ugclu" and r["kind"] == "unlearn"]
    summary = {
        "command": "python bench/cost_ratios.py",
        "mismatches": len(tiny["mismatches"]),
        "goal_unlearn": GOAL_UNLEARN,
        "goal_wall": GOAL_WALL,
        "ugclu_unlearn": [
            {k: r[k] for k in ("preset", "request", "samples", "oracle_samples", "ratio")} for r in unlearn
        ],
        "k_in": method_hparams(load_config(PRESETS[0]), "ugclu", "cifar10").K_in,
        "learn_worst": max(learn_sample_ratios(records).values()),
        "wall": tiny["wall"],
    }
    (out / "cost_ratios-summary.json").write_text(json.dumps(summary, indent=1) + "\n")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="bench/results")
    args = parser.parse_args()
    records = preset_records()
    with tempfile.TemporaryDirectory() as tmp:
        tiny = tiny_run(Path(tmp))
    host = machine()
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    payload = {"machine": host, "records": records, "tiny_run": tiny}
    (out / "cost_ratios.json").write_text(json.dumps(payload, indent=1))
    rebuild(out, out)
    if tiny["mismatches"]:
        sys.exit(f"count model disagrees with measured rows: {tiny['mismatches']}")


if __name__ == "__main__":
    main()
