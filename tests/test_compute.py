"""The compute settings (README, GPU path and cost): on the CPU each is off or without effect, compile matches
eager, the data door still refuses unlearned ids, the airbench model trains, and the cost model of
bench/cost_ratios.py counts exactly what runs measure."""

from __future__ import annotations

import importlib.util
import math
import sys
import threading
import warnings
from pathlib import Path

import pytest
import torch
from recipes import tiny_recipe

from clutune.clu import compute
from clutune.clu.access import TrainAccess, UnlearnedAccessError, crop_flip
from clutune.clu.methods.finetune import Finetune
from clutune.clu.torch_internals import in_every_intra_op_thread
from clutune.core.config import load_config
from clutune.core.experiment import method_hparams, prepare, run_experiment
from clutune.core.oracle import OracleRecipe, oracle_key, train_oracle
from clutune.models import build_model

BENCH = Path(__file__).resolve().parents[1] / "bench"
FAST = {"epochs_per_learn": 1, "iters_per_unlearn": 4, "batch_size": 32}
# Row columns that measure time or name the run, not what was computed.
NOT_RESULTS = {"run_id", "config_hash", "oracle_key", "seconds", "step_seconds", "rss_mb", "oracle_seconds"}
NOT_RESULTS |= {"oracle_cached", "compile_seconds", "cpu_seconds", "cpu_step_seconds"}
# Compile vs eager: inductor reorders float sums, so a few SGD steps drift by rounding, not more (measured here:
# at most 2.6e-7 absolute on any metric of this run; the tolerance leaves room for other CPUs' vector widths).
COMPILE_RTOL, COMPILE_ATOL = 1e-4, 1e-5


def _rows(tmp_path: Path, *sets: str, method: str = "ugclu") -> list[dict]:
    config = load_config("digits-agnostic-class", ["oracle.epochs=2", "model.hidden=[16]", "probe_size=0", *sets])
    prep = prepare(config)
    return run_experiment(prep, method, method_hparams(config, method, "digits", FAST), seed=0)


def _same_results(a: list[dict], b: list[dict], rtol: float = 0.0, atol: float = 0.0) -> None:
    assert len(a) == len(b)
    for ra, rb in zip(a, b, strict=True):
        assert ra.keys() == rb.keys()
        for key in ra.keys() - NOT_RESULTS:
            va, vb = ra[key], rb[key]
            if isinstance(va, float) and math.isnan(va):
                assert isinstance(vb, float) and math.isnan(vb), key
            elif isinstance(va, float):
                assert vb == pytest.approx(va, rel=rtol, abs=atol), (ra["request"], key)
            else:
                assert va == vb, (ra["request"], key)


def test_bf16_on_cpu_runs_fp32_and_warns_once(tmp_path):
    compute.warn_bf16_on_cpu.cache_clear()
    fp32 = _rows(tmp_path, f"oracle.cache_dir={tmp_path / 'a'}")
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        bf16 = _rows(tmp_path, f"oracle.cache_dir={tmp_path / 'b'}", "compute.precision=bf16")
        _rows(tmp_path, f"oracle.cache_dir={tmp_path / 'b'}", "compute.precision=bf16")  # a second run: no repeat
    ours = [w for w in caught if "bf16 is CUDA-only" in str(w.message)]
    assert len(ours) == 1
    _same_results(fp32, bf16)


def _in_a_new_thread(fn) -> object:
    """Run ``fn`` in a fresh thread, as Tune runs a trial: the flush mode is per thread."""
    out = {}
    thread = threading.Thread(target=lambda: out.update(value=fn()))
    thread.start()
    thread.join()
    return out["value"]


SUBNORMAL = 1e-39  # below float32's smallest normal number, 1.18e-38


def _doubled_subnormal() -> float:
    return float(torch.tensor([SUBNORMAL], dtype=torch.float32).mul(2.0)[0])


def test_flushing_holds_within_its_block_and_the_thread_gets_its_own_mode_back():
    def run() -> list[float]:
        seen = [_doubled_subnormal()]
        with compute.flush_denormals(True):
            seen.append(_doubled_subnormal())
            with compute.flush_denormals(False):
                seen.append(_doubled_subnormal())
            seen.append(_doubled_subnormal())
        seen.append(_doubled_subnormal())
        return seen

    kept, flushed = pytest.approx(2 * SUBNORMAL, rel=1e-3), 0.0
    assert _in_a_new_thread(run) == [kept, flushed, kept, flushed, kept]


def test_flushing_reaches_the_intra_op_threads_started_before_the_block():
    """torch's OpenMP pool computes a share of every large operation; its threads keep their own float mode, so
    a flush set in the calling thread alone left the pool's half of a 2-thread product subnormal."""
    threads = torch.get_num_threads()
    torch.set_num_threads(2)
    big = torch.full((1_000_000,), SUBNORMAL, dtype=torch.float32)  # well above the parallel grain size

    def run() -> tuple[list[bool], float, list[bool], float]:
        big.mul(2.0)  # the pool starts here, before the block
        with compute.flush_denormals(True):
            inside = in_every_intra_op_thread(compute.flushing)
            zeros_inside = float(big.mul(2.0).eq(0).float().mean())
        after = in_every_intra_op_thread(compute.flushing)
        return inside, zeros_inside, after, float(big.mul(2.0).eq(0).float().mean())

    try:
        inside, zeros_inside, after, zeros_after = _in_a_new_thread(run)
    finally:
        torch.set_num_threads(threads)
    assert inside == [True, True] and zeros_inside == 1.0
    assert after == [False, False] and zeros_after == 0.0


def test_a_run_trains_with_subnormals_flushed_and_leaves_its_thread_as_it_was(tmp_path, monkeypatch):
    seen = []
    real_learn = Finetune.learn

    def learn(self, request):
        seen.append(_doubled_subnormal())  # inside the run's training
        real_learn(self, request)

    monkeypatch.setattr(Finetune, "learn", learn)

    def product_in_training(*sets: str) -> tuple[float, float]:
        sets = (f"oracle.cache_dir={tmp_path}", "oracle.epochs=1", "model.hidden=[16]", "probe_size=0", *sets)
        config = load_config("digits-agnostic-class", list(sets))

        def run() -> float:
            prep = prepare(config)
            run_experiment(prep, "finetune", method_hparams(config, "finetune", "digits", FAST), 0)
            return _doubled_subnormal()  # after the run, in the same thread

        after = _in_a_new_thread(run)
        return seen[-1], after

    assert product_in_training() == (0.0, pytest.approx(2 * SUBNORMAL, rel=1e-3))  # the default: flushed
    kept = pytest.approx(2 * SUBNORMAL, rel=1e-3)
    assert product_in_training("compute.flush_denormal=false") == (kept, kept)


def test_flushing_leaves_an_oracle_unchanged_bit_for_bit_so_it_stays_out_of_the_key():
    """An oracle's training never gets near 1e-38, which is why the cache key may ignore the setting."""
    config = load_config("digits-agnostic-class", ["oracle.epochs=3"])
    prep = prepare(config)
    ids = prep.owned_ids(len(prep.scenario) - 1)
    recipe = OracleRecipe.from_config(config.oracle, config.model.spec(), config.compute)
    plain = recipe.model_copy(update={"flush_denormal": False})
    flushed = _in_a_new_thread(lambda: train_oracle(prep.dataset, ids, recipe, 0)[1])
    kept = _in_a_new_thread(lambda: train_oracle(prep.dataset, ids, plain, 0)[1])
    assert torch.equal(flushed.logits_train, kept.logits_train) and torch.equal(flushed.logits_test, kept.logits_test)
    assert oracle_key("digits", ids, plain, 0) == oracle_key("digits", ids, recipe, 0)


def test_channels_last_is_a_no_op_on_cpu():
    model = build_model({"name": "cnn"}, (3, 32, 32), 10)
    before = {k: v.clone() for k, v in model.state_dict().items()}
    compute.prepare_model(model, torch.device("cpu"), channels_last=True, compile=False)
    assert all(v.is_contiguous() and torch.equal(v, before[k]) for k, v in model.state_dict().items())
    to_inputs = compute.input_layout(lambda x: x, torch.device("cpu"), channels_last=True)
    x = torch.randn(2, 3, 8, 8)
    assert to_inputs(x) is x


def test_compile_matches_eager(tmp_path):
    requests = "scenario.requests=[{learn: {task: 0}}, {unlearn: {classes: [1]}}]"
    eager = _rows(tmp_path, f"oracle.cache_dir={tmp_path / 'eager'}", requests)
    compiled = _rows(tmp_path, f"oracle.cache_dir={tmp_path / 'compiled'}", requests, "compute.compile=true")
    _same_results(eager, compiled, COMPILE_RTOL, COMPILE_ATOL)
    assert compiled[0]["compile_seconds"] > 0 and eager[0]["compile_seconds"] == 0
    assert all(r["seconds"] >= 0 for r in compiled)


def test_fetch_refuses_an_unlearned_id_before_reading_data():
    x, y = torch.randn(10, 4), torch.arange(10) % 3
    reads: list[torch.Tensor] = []
    access = TrainAccess(x, y, lambda rows: reads.append(rows) or rows)
    access.block(torch.tensor([3]))
    with pytest.raises(UnlearnedAccessError, match="id 3"):
        access.fetch(torch.tensor([0, 3, 5]))
    assert reads == [] and not access.touched.any() and access.samples == 0
    access.block_all_but(torch.tensor([1, 2]))
    assert torch.equal(access.fetch(torch.tensor([2, 1]))[1], y[[2, 1]])
    with pytest.raises(UnlearnedAccessError):
        access.fetch(torch.tensor([0]))


def _crop_flip_masked(x: torch.Tensor, generator: torch.Generator, pad: int = 4) -> torch.Tensor:
    """The earlier boolean-mask form of crop_flip, as the reference the sync-free form must reproduce."""
    n, _, h, w = x.shape
    padded = torch.nn.functional.pad(x, (pad, pad, pad, pad))
    dx = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    dy = torch.randint(0, 2 * pad + 1, (n,), generator=generator)
    rows = (dy.view(n, 1) + torch.arange(h).view(1, h)).view(n, 1, h, 1)
    cols = (dx.view(n, 1) + torch.arange(w).view(1, w)).view(n, 1, 1, w)
    out = padded[torch.arange(n).view(n, 1, 1, 1), torch.arange(x.shape[1]).view(1, -1, 1, 1), rows, cols]
    flip = torch.rand(n, generator=generator) < 0.5
    out[flip] = out[flip].flip(-1)
    return out


def test_crop_flip_without_masks_is_the_same_augmentation():
    x = torch.randn(16, 3, 8, 8)
    got = crop_flip(x, torch.Generator().manual_seed(4))
    assert torch.equal(got, _crop_flip_masked(x, torch.Generator().manual_seed(4)))


def test_oracle_keys_change_only_with_precision():
    recipe = tiny_recipe(epochs=2)
    ids = torch.arange(10)
    legacy = {"model": recipe.model, "epochs": 2, "lr": 0.05, "momentum": 0.9, "weight_decay": 5e-4}
    legacy |= {"batch_size": 64, "schedule": "cosine", "augment": False}
    assert recipe.identity() == legacy  # fp32 keys are those of recipes written before the compute settings
    fast = recipe.model_copy(update={"channels_last": True, "compile": True, "eval_batch_size": 4096})
    assert oracle_key("f", ids, fast, 0) == oracle_key("f", ids, recipe, 0)
    bf16 = recipe.model_copy(update={"precision": "bf16"})
    assert oracle_key("f", ids, bf16, 0) != oracle_key("f", ids, recipe, 0)


def test_config_hash_ignores_speed_settings_but_not_bf16():
    base = load_config("digits-agnostic-class")
    speed = load_config("digits-agnostic-class", ["compute.compile=true", "compute.eval_batch_size=4096"])
    assert speed.hash() == base.hash()
    assert load_config("digits-agnostic-class", ["compute.precision=bf16"]).hash() != base.hash()


def test_airbench_builds_and_trains_a_step_on_a_cifar_shaped_batch():
    torch.manual_seed(0)
    model = build_model({"name": "airbench"}, (3, 32, 32), 10)
    x, y = torch.randn(8, 3, 32, 32), torch.arange(8) % 10
    opt = torch.optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    head = model.head.weight.detach().clone()
    loss = torch.nn.functional.cross_entropy(model(x), y)
    loss.backward()
    opt.step()
    assert model(x).shape == (8, 10) and torch.isfinite(loss)
    assert not torch.equal(model.head.weight, head)


def _cost_ratios():
    sys.path.insert(0, str(BENCH))
    spec = importlib.util.spec_from_file_location("cost_ratios", BENCH / "cost_ratios.py")
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.mark.parametrize("method", ["ugclu", "sfron", "er", "finetune"])
def test_cost_model_counts_what_a_run_measures(tmp_path, method):
    cost = _cost_ratios()
    config = load_config(
        "digits-random", ["oracle.epochs=2", "model.hidden=[16]", "probe_size=0", f"oracle.cache_dir={tmp_path}"]
    )
    prep = prepare(config)
    budget = {**FAST, "iters_per_unlearn": 7} | ({"buffer_size": 90} if method != "finetune" else {})
    hp = method_hparams(config, method, "digits", budget)
    rows = run_experiment(prep, method, hp, seed=0)
    counted = cost.counted_stream(method, hp, prep.scenario, 0, config.oracle.epochs)
    measured = [(r["samples_processed"], r["oracle_samples_processed"]) for r in rows]
    assert measured == [(c["samples"], c["oracle_samples"]) for c in counted]
