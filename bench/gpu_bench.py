"""GPU micro-benchmarks for bench/gpu_check.sh, each writing OUTDIR/gpu-<name>.json with the machine's description.

- ``throughput``: training steps of a model through the data door (fetch, crop+flip, forward, backward, SGD) at
  fp32 and at bf16 + channels-last, each eager and compiled: images/s, compile time apart, peak memory.
- ``oracle``: one oracle retrain with the fast recipe (preset cifar10-fast-oracle) on every training image.
- ``packed``: the throughput step in 1 and in K processes at once on the same device (``sweep.trial_resources.gpu =
  1/K``): aggregate images/s and each trial's peak memory.
- ``syncs``: UG-CLU and ER learn requests with ``torch.cuda.set_sync_debug_mode("error")``: any host-device
  synchronisation inside a training step raises (CUDA only).

The data is random pixels in the real CIFAR-10 format (bench/fake_cifar10.py): the timings need the shapes,
not the pictures, and accuracies on it mean nothing.
"""

from __future__ import annotations

import argparse
import json
import platform
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F

from clutune.clu.access import TrainAccess, crop_flip
from clutune.clu.batches import cycle_batches
from clutune.clu.compute import autocast, compile_seconds, input_layout, prepare_model
from clutune.core.config import load_config
from clutune.core.experiment import build_method, method_hparams, prepare
from clutune.core.oracle import train_oracle
from clutune.data import Dataset, load_dataset
from clutune.models import build_model

SETTINGS = [("fp32", False), ("bf16", True)]  # (precision, channels_last)


def machine(device: torch.device) -> dict[str, Any]:
    """GPU name, driver, torch and CUDA versions (or the CPU, for a dry run)."""
    info = {"torch": torch.__version__, "cuda": torch.version.cuda, "device": str(device), "host": platform.node()}
    if device.type == "cuda":
        info["gpu"] = torch.cuda.get_device_name(device)
        query = ["nvidia-smi", "--query-gpu=driver_version,memory.total", "--format=csv,noheader"]
        info["driver"] = subprocess.run(query, capture_output=True, text=True, check=False).stdout.strip()
    else:
        info["cpu"] = platform.processor() or platform.machine()
    return info


def sync(device: torch.device) -> None:
    if device.type == "cuda":
        torch.cuda.synchronize(device)


def peak_mib(device: torch.device) -> float:
    """Peak memory of this process: allocated on the GPU, resident on the host for a CPU dry run."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024


def trainer(
    data: Dataset, model_name: str, device: torch.device, precision: str, channels_last: bool, compile: bool, batch: int
) -> Callable[[], None]:
    """One training step per call, the way methods take them: ids through the data door, then SGD."""
    torch.manual_seed(0)
    model = build_model({"name": model_name}, data.input_shape, data.num_classes).to(device)
    prepare_model(model, device, channels_last, compile)
    access = TrainAccess(data.x_train, data.y_train, input_layout(data.inputs, device, channels_last), crop_flip)
    opt = torch.optim.SGD(model.parameters(), lr=0.05, momentum=0.9, weight_decay=5e-4)
    generator = torch.Generator().manual_seed(0)
    full = torch.arange(data.n_train - data.n_train % batch)  # whole batches only: one shape, one compiled graph
    batches = cycle_batches(full, batch, generator)
    model.train()

    def step() -> None:
        x, y = access.fetch(next(batches), generator)
        opt.zero_grad(set_to_none=True)
        with autocast(precision, device):
            loss = F.cross_entropy(model(x), y)
        loss.backward()
        opt.step()

    return step


def timed(step: Callable[[], None], device: torch.device, warmup: int, steps: int) -> dict[str, float]:
    """Warm-up seconds (compilation included) and the timed steps' seconds, the device drained around each; the
    timed window's wall-clock start and end too, to line up trials of several processes."""
    t0 = time.perf_counter()
    for _ in range(warmup):
        step()
    sync(device)
    start, t1 = time.time(), time.perf_counter()
    for _ in range(steps):
        step()
    sync(device)
    return {"warmup_seconds": t1 - t0, "timed_seconds": time.perf_counter() - t1, "start": start, "end": time.time()}


def throughput(args: argparse.Namespace, data: Dataset, device: torch.device) -> list[dict[str, Any]]:
    out = []
    for compile in [False, True] if args.compile else [False]:
        for precision, channels_last in SETTINGS:
            if device.type == "cuda":
                torch.cuda.reset_peak_memory_stats(device)
            c0 = compile_seconds()
            step = trainer(data, args.model, device, precision, channels_last, compile, args.batch)
            t = timed(step, device, args.warmup, args.steps)
            out.append(
                {
                    "model": args.model,
                    "precision": precision,
                    "channels_last": channels_last,
                    "compile": compile,
                    "batch": args.batch,
                    "steps": args.steps,
                    "images_per_s": args.steps * args.batch / t["timed_seconds"],
                    "step_ms": 1000 * t["timed_seconds"] / args.steps,
                    "warmup_seconds": t["warmup_seconds"],
                    "compile_seconds": compile_seconds() - c0,
                    "peak_mib": peak_mib(device),
                }
            )
            print(json.dumps(out[-1]), flush=True)
    return out


def oracle(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    """The fast recipe's oracle on every training image: the largest oracle a CIFAR-10 stream can ask for."""
    sets = [f"dataset.root={args.root}", f"device={device}", "threads=0"]
    if args.oracle_epochs:
        sets.append(f"oracle.epochs={args.oracle_epochs}")
    prep = prepare(load_config("cifar10-fast-oracle", sets))
    owned = torch.arange(prep.dataset.n_train)
    _, outputs = train_oracle(prep.dataset, owned, prep.recipe, seed=0)
    return {
        "recipe": prep.recipe.model_dump(),
        "owned": len(owned),
        "seconds": outputs.seconds,
        "compile_seconds": outputs.compile_seconds,
        "samples_processed": outputs.samples_processed,
        "peak_mib": peak_mib(device),
    }


def trial(args: argparse.Namespace, data: Dataset, device: torch.device) -> dict[str, Any]:
    """One packed trial: warm up, wait for the others (a file per trial in --barrier), then the timed steps."""
    step = trainer(data, args.model, device, "bf16", True, False, args.batch)
    for _ in range(args.warmup):
        step()
    sync(device)
    barrier = Path(args.barrier)
    (barrier / f"ready-{args.index}").touch()
    while len(list(barrier.glob("ready-*"))) < args.trials:
        time.sleep(0.05)
    t = timed(step, device, 0, args.steps)
    return {"images": args.steps * args.batch, **t, "peak_mib": peak_mib(device)}


def packed(args: argparse.Namespace) -> list[dict[str, Any]]:
    """Aggregate images/s of K trials sharing the device: all images over the span of their timed windows."""
    out = []
    for k in (1, args.trials):
        barrier = Path(tempfile.mkdtemp(prefix=f"clutune-barrier-{k}-"))
        common = ["--mode", "trial", "--trials", str(k), "--barrier", str(barrier)]
        options = ["--model", args.model, "--steps", str(args.steps), "--warmup", str(args.warmup)]
        options += ["--batch", str(args.batch), "--root", args.root, "--device", args.device, "--out", args.out]
        procs = [
            subprocess.Popen(
                [sys.executable, __file__, *common, *options, "--index", str(i)], stdout=subprocess.PIPE, text=True
            )
            for i in range(k)
        ]
        trials = [json.loads(p.communicate()[0].strip().splitlines()[-1]) for p in procs]
        shutil.rmtree(barrier)
        span = max(t["end"] for t in trials) - min(t["start"] for t in trials)
        out.append(
            {
                "trials": k,
                "aggregate_images_per_s": sum(t["images"] for t in trials) / span,
                "peak_mib_per_trial": [t["peak_mib"] for t in trials],
            }
        )
        print(json.dumps(out[-1]), flush=True)
    return out


def syncs(args: argparse.Namespace, device: torch.device) -> dict[str, Any]:
    """Learn requests of UG-CLU and ER (the buffer already holds task 0) with sync debugging set to raise."""
    if device.type != "cuda":
        return {"checked": False, "why": "no CUDA device: nothing to synchronise with"}
    sets = [f"dataset.root={args.root}", "device=cuda", "model.name=" + args.model, "threads=0", "augment=true"]
    config = load_config("cifar10-agnostic-class", sets)
    prep = prepare(config)
    result: dict[str, Any] = {"checked": True}
    budget = {"epochs_per_learn": 1, "buffer_size": 1000}
    for method in ("ugclu", "er"):
        m = build_method(prep, method, method_hparams(config, method, "cifar10", budget), seed=0)
        m.learn(prep.scenario.requests[0])
        torch.cuda.synchronize()
        torch.cuda.set_sync_debug_mode("error")
        try:
            m.learn(prep.scenario.requests[1])
            result[method] = "no synchronisation inside training steps"
        except RuntimeError as e:
            result[method] = f"synchronised: {e}"
        finally:
            torch.cuda.set_sync_debug_mode(0)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--mode", choices=["throughput", "oracle", "packed", "syncs", "trial"], required=True)
    parser.add_argument("--root", required=True, help="folder holding cifar-10-batches-py")
    parser.add_argument("--out", required=True)
    parser.add_argument("--device", default="cuda")
    parser.add_argument("--model", default="resnet18_cifar")
    parser.add_argument("--batch", type=int, default=128)
    parser.add_argument("--steps", type=int, default=50)
    parser.add_argument("--warmup", type=int, default=5)
    parser.add_argument("--compile", type=int, default=1, help="also time compiled models (0: eager only)")
    parser.add_argument("--oracle-epochs", type=int, default=0, help="0: the fast recipe's own epochs")
    parser.add_argument("--trials", type=int, default=4)
    parser.add_argument("--barrier", default="")
    parser.add_argument("--index", type=int, default=0)
    args = parser.parse_args()
    device = torch.device(args.device)
    if args.mode in ("throughput", "trial"):
        data = load_dataset("cifar10", args.root).to(device)
        result = (throughput if args.mode == "throughput" else trial)(args, data, device)
    elif args.mode == "oracle":
        result = oracle(args, device)
    elif args.mode == "packed":
        result = packed(args)
    else:
        result = syncs(args, device)
    if args.mode == "trial":
        print(json.dumps(result))
        return
    record = {"machine": machine(device), "mode": args.mode, "result": result}
    Path(args.out, f"gpu-{args.mode}.json").write_text(json.dumps(record, indent=1))


if __name__ == "__main__":
    main()
