"""Packed oracle training against one at a time: models per second at K = 1, 4, 16, 64, side by side in one run.

For the digits MLP (64-128-10), the mnist1d MLP (40-256-256-10) and the small CNN (on digits as 1x8x8 images),
each model is an oracle of the shipped recipe (SGD 0.05, momentum 0.9, weight decay 5e-4, batch 64, cosine)
for ``--epochs`` epochs on its own owned ids (a random 90% of the training set, drawn from its seed), timed
end to end: build, train, and its logits on every training and test sample. Three ways, per K:

- ``solo``: ``train_oracle`` K times, today's path;
- ``bmm`` and ``vmap``: one pack of K through ``train_oracle_pack``, its per-member gradients from the layers
  batched by hand (``baddbmm``, grouped convolution) or from ``torch.func`` (``vmap`` of ``grad`` over
  ``functional_call``); **chosen** is the one ``choose_gradients`` picks, the rule these measurements set.

The machine is shared, so the ways are interleaved within every repeat (their order rotates) and load hits
all of them; the tables give medians over repeats. Torch runs on ``--threads`` threads, an oracle task's
(the config's ``threads``, 1 by default).

Writes packing.json (every timing), packing.md (models per second and the packed/solo ratios) and packing.png
into ``--out``; packing.json is the raw record, and ``rebuild()`` (``--report-only``, ``make results``) writes
packing.md, packing.png and packing-summary.json (what docs/benchmarks.md quotes) from it alone. Usage:
python bench/packing.py [--out bench/results] [--epochs 3] [--repeats 3] [--device cpu] [--report-only]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import platform
import statistics
import time
from pathlib import Path
from typing import Any

import torch
from table import write_table

from clutune.clu.packed import batched_gradients, choose_gradients, vmap_gradients
from clutune.core.oracle import OracleRecipe, train_oracle
from clutune.core.packed_oracles import MemberSpec, train_oracle_pack
from clutune.data import Dataset, load_dataset
from clutune.models import build_model

KS = (1, 4, 16, 64)
WAYS = ("solo", "bmm", "vmap")
OWNED_SHARE = 0.9
RECIPE = {"lr": 0.05, "momentum": 0.9, "weight_decay": 5e-4, "batch_size": 64, "schedule": "cosine", "augment": False}
GOAL_K, GOAL_RATIO = 16, 3.0  # the MLPs, packed the chosen way, against solo


def datasets(device: str) -> dict[str, tuple[Dataset, dict[str, Any]]]:
    digits = load_dataset("digits")
    images = dataclasses.replace(
        digits, x_train=digits.x_train.view(-1, 1, 8, 8), x_test=digits.x_test.view(-1, 1, 8, 8)
    )
    return {
        "digits MLP": (digits.to(device), {"name": "mlp", "hidden": [128]}),
        "mnist1d MLP": (load_dataset("mnist1d").to(device), {"name": "mlp", "hidden": [256, 256]}),
        "small CNN (digits 1x8x8)": (images.to(device), {"name": "cnn"}),
    }


def chosen(device: str, ks: list[int]) -> dict[str, dict[int, str]]:
    """Per model and K, the way ``choose_gradients`` picks (the measurements of both ways do not depend on it)."""
    names = {batched_gradients: "bmm", vmap_gradients: "vmap"}
    out = {}
    for name, (dataset, spec) in datasets(device).items():
        model = build_model(spec, dataset.input_shape, dataset.num_classes)
        out[name] = {k: names[choose_gradients(model, k)] for k in ks}
    return out


def members(dataset: Dataset, k: int) -> list[MemberSpec]:
    n = int(dataset.n_train * OWNED_SHARE)
    return [
        MemberSpec(seed, torch.randperm(dataset.n_train, generator=torch.Generator().manual_seed(seed))[:n])
        for seed in range(k)
    ]


def timed(way: str, dataset: Dataset, specs: list[MemberSpec], recipe: OracleRecipe) -> float:
    """Wall seconds to train (and score) every member of ``specs`` the way ``way``."""
    t0 = time.perf_counter()
    if way == "solo":
        for spec in specs:
            train_oracle(dataset, spec.owned_ids, recipe, spec.seed)
    else:
        train_oracle_pack(dataset, specs, recipe, batched_gradients if way == "bmm" else vmap_gradients)
    if dataset.x_train.device.type == "cuda":
        torch.cuda.synchronize()
    return time.perf_counter() - t0


def measure(args: argparse.Namespace) -> dict[str, Any]:
    records = []
    for name, (dataset, model) in datasets(args.device).items():
        recipe = OracleRecipe(model=model, epochs=args.epochs, **RECIPE)
        for way in WAYS:  # warm-up: first-call costs (imports, allocator) belong to no K
            timed(way, dataset, members(dataset, 2), recipe)
        for k in args.ks:
            specs = members(dataset, k)
            for rep in range(args.repeats):
                order = WAYS[rep % len(WAYS) :] + WAYS[: rep % len(WAYS)]
                for way in order:
                    seconds = timed(way, dataset, specs, recipe)
                    records.append({"model": name, "k": k, "way": way, "repeat": rep, "seconds": seconds})
                    print(f"{name} K={k} {way} repeat {rep}: {seconds:.3f} s ({k / seconds:.2f} models/s)", flush=True)
    return {
        "machine": {
            "platform": platform.platform(),
            "processor": platform.processor(),
            "torch": torch.__version__,
            "threads": torch.get_num_threads(),
            "device": args.device,
            "gpu": torch.cuda.get_device_name(0) if args.device == "cuda" else "",
        },
        "epochs": args.epochs,
        "repeats": args.repeats,
        "owned_share": OWNED_SHARE,
        "records": records,
    }


def medians(result: dict[str, Any]) -> dict[tuple[str, int, str], float]:
    """(model, K, way) -> the median over repeats of models per second."""
    groups: dict[tuple[str, int, str], list[float]] = {}
    for r in result["records"]:
        groups.setdefault((r["model"], r["k"], r["way"]), []).append(r["k"] / r["seconds"])
    return {key: statistics.median(v) for key, v in groups.items()}


def report(result: dict[str, Any], out: Path) -> None:
    rates = medians(result)
    machine = result["machine"]
    names = list(dict.fromkeys(r["model"] for r in result["records"]))
    ks = sorted({r["k"] for r in result["records"]})
    pick = chosen(machine["device"], ks)
    lines = [
        "# Packed oracle training against one at a time",
        "",
        f"Made by `bench/packing.py`: {machine['device']}, {machine['threads']} torch thread(s), "
        f"torch {machine['torch']}{', ' + machine['gpu'] if machine['gpu'] else ''}; {result['epochs']} epochs of "
        f"the oracle recipe per model, each on its own {result['owned_share']:.0%} of the training set; median of "
        f"{result['repeats']} interleaved repeats. Models per second, end to end (build, train, score), and the "
        "ratio to one at a time, for the layers batched by hand (**bmm**), for `torch.func` (**vmap**) and for the "
        "way `choose_gradients` picks (**chosen**). Paired ratios (each repeat's solo time over its packed time, "
        "so both saw the same load) are in the second table.",
        "",
        "| model | K | solo models/s | bmm models/s | vmap models/s | bmm / solo | vmap / solo | chosen "
        "| chosen / solo |",
        "|---|---|---|---|---|---|---|---|---|",
    ]
    for name in names:
        for k in ks:
            solo, bmm, vm = (rates[(name, k, w)] for w in WAYS)
            way = pick[name][k]
            lines.append(
                f"| {name} | {k} | {solo:.2f} | {bmm:.2f} | {vm:.2f} | {bmm / solo:.2f}x | {vm / solo:.2f}x | "
                f"{way} | **{rates[(name, k, way)] / solo:.2f}x** |"
            )
    lines += ["", "| model | K | bmm / solo per repeat | vmap / solo per repeat |", "|---|---|---|---|"]
    seconds = {(r["model"], r["k"], r["repeat"], r["way"]): r["seconds"] for r in result["records"]}
    for name in names:
        for k in ks:
            paired = [
                ", ".join(
                    f"{seconds[(name, k, rep, 'solo')] / seconds[(name, k, rep, way)]:.2f}"
                    for rep in range(result["repeats"])
                )
                for way in ("bmm", "vmap")
            ]
            lines.append(f"| {name} | {k} | {paired[0]} | {paired[1]} |")
    lines += ["", f"Goal: at least {GOAL_RATIO:g}x at K = {GOAL_K} for the MLPs (chosen way against solo)."]
    for name in names:
        if "MLP" in name and (name, GOAL_K, "solo") in rates:
            ratio = rates[(name, GOAL_K, pick[name][GOAL_K])] / rates[(name, GOAL_K, "solo")]
            lines.append(f"- {name}: {ratio:.2f}x, goal {'met' if ratio >= GOAL_RATIO else 'not met'}.")
    lines += ["", "![models per second against K](packing.png)", "", f"Command: `{command(result)}`"]
    write_table(lines, out / "packing.md")
    plot(names, ks, rates, out / "packing.png")
    summary = {
        "command": command(result),
        "repeats": result["repeats"],
        "epochs": result["epochs"],
        "goal": {"k": GOAL_K, "ratio": GOAL_RATIO},
        "models": {
            name: {
                str(k): {
                    "chosen": pick[name][k],
                    **{f"{w}_over_solo": rates[(name, k, w)] / rates[(name, k, "solo")] for w in ("bmm", "vmap")},
                    "chosen_over_solo": rates[(name, k, pick[name][k])] / rates[(name, k, "solo")],
                    # in how many repeats vmap beat bmm (paired: the same repeat saw the same load)
                    "vmap_faster_repeats": sum(
                        seconds[(name, k, rep, "vmap")] < seconds[(name, k, rep, "bmm")]
                        for rep in range(result["repeats"])
                    ),
                }
                for k in ks
            }
            for name in names
        },
    }
    (out / "packing-summary.json").write_text(json.dumps(summary, indent=1) + "\n")


def command(result: dict[str, Any]) -> str:
    """The command line that measured ``result``, from what it recorded."""
    ks = ",".join(str(k) for k in sorted({r["k"] for r in result["records"]}))
    machine = result["machine"]
    return (
        f"python bench/packing.py --epochs {result['epochs']} --repeats {result['repeats']} --ks {ks} "
        f"--device {machine['device']} --threads {machine['threads']}"
    )


def rebuild(results: Path, out: Path) -> None:
    """packing.md, .png and -summary.json from the timings in ``results``/packing.json alone."""
    report(json.loads((results / "packing.json").read_text()), out)


def plot(names: list[str], ks: list[int], rates: dict[tuple[str, int, str], float], path: Path) -> None:
    from matplotlib.figure import Figure

    fig = Figure(figsize=(5 * len(names), 4))
    axes = fig.subplots(1, len(names), squeeze=False)[0]
    for ax, name in zip(axes, names, strict=True):
        for way in WAYS:
            ax.plot(ks, [rates[(name, k, way)] for k in ks], marker="o", label=way)
        ax.set_xscale("log", base=2)
        ax.set_xticks(ks, [str(k) for k in ks])
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("models per pack (K)")
        ax.set_ylabel("models per second (median)")
        ax.legend(fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100, metadata={"Software": None})  # no version stamp: the same timings, the same bytes


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--out", default="bench/results")
    parser.add_argument("--epochs", type=int, default=3)
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--ks", default=",".join(map(str, KS)))
    parser.add_argument("--device", default="cpu")
    parser.add_argument("--report-only", action="store_true", help="rebuild packing.md and .png from packing.json")
    parser.add_argument("--threads", type=int, default=1, help="torch threads: an oracle task's, the config's threads")
    args = parser.parse_args()
    args.ks = [int(k) for k in args.ks.split(",")]
    if args.threads > 0:
        torch.set_num_threads(args.threads)
    out = Path(args.out)
    out.mkdir(parents=True, exist_ok=True)
    if not args.report_only:
        (out / "packing.json").write_text(json.dumps(measure(args), indent=1) + "\n")
    rebuild(out, out)


if __name__ == "__main__":
    main()
