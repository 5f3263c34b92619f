"""Each baseline does what its definition says, checked through real runs of short digits streams.

Every run goes through ``run_experiment`` (the runner's purge, privacy check and evaluation included); a watcher
sees the method after each request, so each test compares the model right before and right after the request
that matters.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import torch.nn.functional as F
import yaml

from clutune.clu.methods.base import Method
from clutune.clu.training import predict_logits
from clutune.core.config import load_config
from clutune.core.experiment import Prepared, build_method, method_hparams, prepare, run_experiment
from clutune.core.scenarios import Request
from clutune.data import Dataset, load_dataset
from clutune.errors import UserError

torch.set_num_threads(1)

CLASS_STREAM = [{"learn": {"task": 0}}, {"learn": {"task": 1}}, {"unlearn": {"classes": [1]}}]
TASK_STREAM = [{"learn": {"task": 0}}, {"learn": {"task": 1}}, {"unlearn": {"task": 1}}]
SMALL = {"epochs_per_learn": 3, "iters_per_unlearn": 20}

Watch = Callable[[Request, Method], None]


@pytest.fixture(scope="module")
def dataset() -> Dataset:
    return load_dataset("digits")


@pytest.fixture(scope="module")
def oracles(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("oracles")


def setup(tmp_path: Path, dataset: Dataset, oracles: Path, requests: list[dict[str, Any]]) -> Prepared:
    cfg = {
        "name": "baselines",
        "seed": 0,
        "dataset": {"name": "digits"},
        "model": {"name": "mlp", "hidden": [64]},
        "oracle": {"epochs": 1, "lr": 0.05, "batch_size": 64, "cache_dir": str(oracles)},
        "scenario": {"classes_per_task": 2, "requests": requests},
    }
    path = tmp_path / "scenario.yaml"
    path.write_text(yaml.safe_dump(cfg, sort_keys=False))
    return prepare(load_config(path), dataset)


def run(prep: Prepared, method: str, watch: Watch, **hp: Any) -> list[dict[str, Any]]:
    """Run ``method`` (presets/best defaults < SMALL < ``hp``) and call ``watch`` after every request."""
    hparams = method_hparams(prep.config, method, "digits", {**SMALL, **hp})
    return run_experiment(
        prep, method, hparams, seed=0, on_row=lambda row, r: watch(prep.scenario.requests[row["request"]], r.method)
    )


def train_logits(prep: Prepared, model: torch.nn.Module, ids: torch.Tensor) -> torch.Tensor:
    return predict_logits(model, prep.dataset.x_train[ids], prep.dataset.inputs)


def train_labels(prep: Prepared, ids: torch.Tensor) -> torch.Tensor:
    return prep.dataset.y_train.cpu()[ids]


def params_of(model: torch.nn.Module) -> dict[str, torch.Tensor]:
    return {n: p.detach().clone() for n, p in model.named_parameters()}


# ------------------------------------------------------------------ continual-learning baselines


def test_er_buffer_stays_within_capacity_and_owned(tmp_path, dataset, oracles):
    prep = setup(tmp_path, dataset, oracles, CLASS_STREAM)
    sizes = []

    def watch(request: Request, m: Method) -> None:
        owned = prep.scenario.owned(request.index)
        assert len(m.buffer) <= 50
        assert len(torch.unique(m.buffer.ids)) == len(m.buffer)
        assert owned[m.buffer.ids].all()
        sizes.append(len(m.buffer))

    run(prep, "er", watch, buffer_size=50)
    assert sizes[:2] == [50, 50]  # full after each learn request
    assert sizes[2] < 50  # class 1 purged


def test_derpp_buffer_logits_are_the_logits_at_insertion(tmp_path, dataset, oracles):
    at_insertion: dict[int, torch.Tensor] = {}
    checked = []
    prep = setup(tmp_path, dataset, oracles, CLASS_STREAM)

    def watch(request: Request, m: Method) -> None:
        if request.kind == "learn":
            now = train_logits(prep, m.model, request.ids)
            at_insertion.update({int(i): row for i, row in zip(request.ids, now, strict=True)})
        assert m.buffer.logits.shape == (len(m.buffer), 10)
        expected = torch.stack([at_insertion[int(i)] for i in m.buffer.ids])
        torch.testing.assert_close(m.buffer.logits, expected, atol=1e-5, rtol=1e-5)
        if request.index == 1:  # task-0 rows keep request 0's logits, not today's
            old = train_labels(prep, m.buffer.ids) < 2
            assert not torch.allclose(m.buffer.logits[old], train_logits(prep, m.model, m.buffer.ids[old]))
        checked.append(len(m.buffer))

    run(prep, "derpp", watch, buffer_size=100)
    assert len(checked) == 3


def test_ewc_penalty_is_zero_at_its_snapshot_and_grows_when_weights_move(tmp_path, dataset, oracles):
    seen: dict[int, Any] = {}

    def watch(request: Request, m: Method) -> None:
        seen[request.index] = {
            "penalty": float(m.penalty().detach()),
            "fisher": {n: f.clone() for n, f in m.fisher.items()},
            "fresh": m.empirical_fisher(request.ids) if request.kind == "learn" else None,
        }

    run(setup(tmp_path, dataset, oracles, CLASS_STREAM), "ewc", watch, gamma_ewc=0.5, lambda_ewc=100.0, unlearn_lr=1e-3)
    assert seen[0]["penalty"] == 0.0 and seen[1]["penalty"] == 0.0  # right after each snapshot
    assert seen[2]["penalty"] > 0.0  # the ascent moved the weights away from the snapshot
    for n, f in seen[1]["fisher"].items():  # online: F_1 = gamma * F_0 + F_new
        torch.testing.assert_close(f, 0.5 * seen[0]["fisher"][n] + seen[1]["fresh"][n])
    assert all((f >= 0).all() for f in seen[1]["fisher"].values())
    assert sum(float(f.sum()) for f in seen[1]["fisher"].values()) > 0


def test_lwf_teacher_is_the_frozen_model_from_before_the_request(tmp_path, dataset, oracles):
    before: dict[int, dict[str, torch.Tensor]] = {}

    def watch(request: Request, m: Method) -> None:
        if request.index == 0:
            assert m.teacher is None  # nothing learned before: nothing to distil
            assert m.known.nonzero().flatten().tolist() == [0, 1]
        if request.index == 1:
            teacher = dict(m.teacher.named_parameters())
            assert all(not p.requires_grad for p in teacher.values())
            for n, p in before[0].items():
                assert torch.equal(teacher[n], p)  # unchanged by the request
            assert any(not torch.equal(p, before[0][n]) for n, p in m.model.named_parameters())
            assert m.known.nonzero().flatten().tolist() == [0, 1, 2, 3]
        before[request.index] = params_of(m.model)

    run(setup(tmp_path, dataset, oracles, CLASS_STREAM), "lwf", watch)


# ------------------------------------------------------------------ unlearning baselines (ER learn steps)


def forget_ce(prep: Prepared, model: torch.nn.Module) -> float:
    ids = prep.scenario.requests[2].ids
    return float(F.cross_entropy(train_logits(prep, model, ids), train_labels(prep, ids)))


def test_ga_raises_the_loss_on_the_forget_set(tmp_path, dataset, oracles):
    losses = []
    prep = setup(tmp_path, dataset, oracles, CLASS_STREAM)
    run(prep, "ga", lambda r, m: losses.append(forget_ce(prep, m.model)), unlearn_lr=1e-2)
    assert losses[2] > losses[1] + 1.0


def test_rl_moves_forget_predictions_away_from_their_labels(tmp_path, dataset, oracles):
    prep = setup(tmp_path, dataset, oracles, CLASS_STREAM)
    forget = prep.scenario.requests[2].ids
    acc, drawn = [], []

    def watch(request: Request, m: Method) -> None:
        pred = train_logits(prep, m.model, forget).argmax(1)
        acc.append(float((pred == train_labels(prep, forget)).float().mean()))
        if request.index == 1:  # record the targets the unlearn request draws
            draw = m.random_labels
            m.random_labels = lambda ids: drawn.append(draw(ids)) or drawn[-1]

    run(prep, "rl", watch, iters_per_unlearn=40, unlearn_lr=0.01)
    assert acc[1] > 0.8
    assert acc[2] < 0.2
    (targets,) = drawn  # one wrong label per D_U sample, among the classes the purged buffer holds
    assert len(targets) == len(forget)
    assert set(targets.tolist()) == {0, 2, 3}


def test_salun_leaves_unmasked_weights_alone(tmp_path, dataset, oracles):
    prep = setup(tmp_path, dataset, oracles, CLASS_STREAM)
    forget = prep.scenario.requests[2].ids
    state: dict[str, Any] = {}

    def watch(request: Request, m: Method) -> None:
        if request.index == 1:  # the model the unlearn request will start from
            state["mask"] = m.gradient_mask(forget)
            state["before"] = [p.detach().clone() for p in m.model.parameters()]
        if request.index == 2:
            state["after"] = [p.detach().clone() for p in m.model.parameters()]

    run(prep, "salun", watch, weight_decay=0.0, mask_ratio=0.3, unlearn_lr=0.01)
    mask, before, after = state["mask"], state["before"], state["after"]
    total = sum(m.numel() for m in mask)
    assert sum(int(m.sum()) for m in mask) == int(0.3 * total)  # global top share, across layers
    for m, b, a in zip(mask, before, after, strict=True):
        assert torch.equal(a[m == 0], b[m == 0])
    assert any(not torch.equal(a[m == 1], b[m == 1]) for m, b, a in zip(mask, before, after, strict=True))


def test_sfron_without_forget_coefficient_only_takes_remaining_steps(tmp_path, dataset, oracles):
    prep = setup(tmp_path, dataset, oracles, CLASS_STREAM)
    forget = prep.scenario.requests[2].ids

    def watch(request: Request, m: Method) -> None:
        if request.index == 1:
            m.data.touched[:] = False
        if request.index == 2:
            assert not m.data.touched[forget].any()  # D_U was never read: no mask, no forget step
            assert m.data.touched[m.buffer.ids].all()

    rows = run(prep, "sfron", watch, alpha0=0.0, buffer_size=300)
    assert rows[2]["samples_processed"] == SMALL["iters_per_unlearn"] * 128  # one buffer batch per iteration

    touched = []

    def watch_forget(request: Request, m: Method) -> None:
        if request.index == 1:
            m.data.touched[:] = False
        if request.index == 2:
            touched.append(bool(m.data.touched[forget].all()))

    rows = run(prep, "sfron", watch_forget, alpha0=0.03, buffer_size=300)
    assert touched == [True]
    assert rows[2]["samples_processed"] > SMALL["iters_per_unlearn"] * 128


def test_scrub_teacher_is_frozen_and_max_steps_push_the_student_away_on_the_forget_set(tmp_path, dataset, oracles):
    prep = setup(tmp_path, dataset, oracles, CLASS_STREAM)
    forget = prep.scenario.requests[2].ids

    def forget_kl(max_fraction: float) -> float:
        before: dict[str, torch.Tensor] = {}
        kl = []

        def watch(request: Request, m: Method) -> None:
            if request.index == 1:
                before.update(params_of(m.model))
            if request.index == 2:
                teacher = dict(m.teacher.named_parameters())
                assert all(torch.equal(teacher[n], p) and not teacher[n].requires_grad for n, p in before.items())
                t, s = train_logits(prep, m.teacher, forget), train_logits(prep, m.model, forget)
                kl.append(float(F.kl_div(F.log_softmax(s, 1), F.softmax(t, 1), reduction="batchmean")))

        run(prep, "scrub", watch, max_fraction=max_fraction, iters_per_unlearn=40)
        return kl[0]

    # min-steps alone drift a little (the short test budgets leave the model still learning); max-steps add more
    assert forget_kl(0.5) > 2 * forget_kl(0.0)


# ------------------------------------------------------------------ CLPU-DER++


def test_clpu_unlearning_a_temporary_task_restores_the_model_exactly(tmp_path, dataset, oracles):
    prep = setup(tmp_path, dataset, oracles, TASK_STREAM)
    test_logits: list[torch.Tensor] = []
    states: list[dict[str, Any]] = []

    def watch(request: Request, m: Method) -> None:
        test_logits.append(predict_logits(m.model, prep.dataset.x_test, prep.dataset.inputs))
        states.append(m.state_dict())
        assert sorted(int(k) for k in m.model.sides) == ([0] if request.index != 1 else [0, 1])

    rows = run(prep, "clpu", watch)
    assert not torch.equal(test_logits[1], test_logits[0])
    assert torch.equal(test_logits[2], test_logits[0])  # exact: as if task 1 was never learned
    assert rows[2]["samples_processed"] == 0  # deleting a side network trains nothing

    # A checkpoint taken with a side network alive loads into a fresh instance, which can go on unlearning it.
    hparams = method_hparams(prep.config, "clpu", "digits", SMALL)
    fresh = build_method(prep, "clpu", hparams, seed=0)
    fresh.load_state_dict(states[1])
    torch.testing.assert_close(predict_logits(fresh.model, prep.dataset.x_test, prep.dataset.inputs), test_logits[1])
    fresh.buffer.purge(prep.scenario.requests[2].ids)
    fresh.unlearn(prep.scenario.requests[2])
    assert torch.equal(predict_logits(fresh.model, prep.dataset.x_test, prep.dataset.inputs), test_logits[0])


@pytest.mark.parametrize(
    ("requests", "hp", "message"),
    [
        (CLASS_STREAM, {}, "clpu cannot serve request 2 (unlearn {'classes': [1]}): it unlearns whole temporary"),
        (
            [{"learn": {"task": 0}}, {"learn": {"task": 1}}, {"unlearn": {"task": 0}}],
            {"merge_after": 1},
            "clpu cannot serve request 2 (unlearn {'task': 0}): task 0 was merged into the main network",
        ),
        ([{"learn": {"tasks": [0, 1]}}], {}, "request 0 (learn {'tasks': [0, 1]}): clpu learns exactly one whole task"),
    ],
)
def test_clpu_refuses_what_it_cannot_unlearn_before_the_run(tmp_path, dataset, oracles, requests, hp, message):
    prep = setup(tmp_path, dataset, oracles, requests)
    hparams = method_hparams(prep.config, "clpu", "digits", hp)
    with pytest.raises(UserError) as err:
        build_method(prep, "clpu", hparams, seed=0)
    assert message in str(err.value)
    assert "\n" not in str(err.value)


def test_clpu_merges_a_task_after_merge_after_further_tasks(tmp_path, dataset, oracles):
    prep = setup(tmp_path, dataset, oracles, [{"learn": {"task": t}} for t in range(3)])
    sides = []
    run(prep, "clpu", lambda r, m: sides.append(sorted(map(int, m.model.sides))), merge_after=1)
    assert sides == [[0], [1], [2]]


# ------------------------------------------------------------------ retrain


def test_retrain_sits_at_the_noise_floor_of_the_oracle(tmp_path, dataset):
    config = load_config("digits-agnostic-class", [f"oracle.cache_dir={tmp_path / 'oracles'}"])
    prep = prepare(config, dataset)
    rows = run_experiment(prep, "retrain", method_hparams(config, "retrain", "digits"), seed=config.seed)
    assert len(rows) == len(prep.scenario)
    assert np.mean([r["kl_oracle_all"] for r in rows]) <= 0.02
