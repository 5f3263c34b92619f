"""Generated streams (scenario.generate): exact length, only owned ids unlearned, unlearned ids never back,
seeded, validated knobs, the long presets, and owned/unlearned replayed from events instead of stored masks."""

from __future__ import annotations

import pickle
import random
import time
from pathlib import Path
from typing import Any

import numpy as np
import pytest
import torch
import yaml
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from clutune.core.config import CONFIG_DIR, GenerateConfig, load_config
from clutune.core.experiment import prepare
from clutune.core.scenario_generator import generate_requests, scenario_requests
from clutune.core.scenarios import Scenario, build_scenario, resolve_task_classes
from clutune.data import load_dataset, make_dataset
from clutune.errors import UserError

TASKS = resolve_task_classes(None, 2, 10)


@pytest.fixture(scope="module")
def digits_labels() -> torch.Tensor:
    return load_dataset("digits").y_train


def mnist1d_like_labels(samples: int, seed: int = 0) -> torch.Tensor:
    """The label structure of mnist1d's make_dataset: samples // 10 per class, shuffled, the first 80% train.

    Generating the real data costs about half a millisecond per sample, too slow for this file; the stream
    only depends on the training labels, and these have mnist1d's exact class totals.
    """
    y = np.random.default_rng(seed).permutation(np.repeat(np.arange(10), samples // 10))
    return torch.from_numpy(y[: int(len(y) * 0.8)])


def fake_dataset(labels: torch.Tensor) -> Any:
    x = torch.zeros(len(labels), 4)
    return make_dataset("fake", x, labels, x[:10], torch.arange(10))


def resolve(raw: dict[str, Any], labels: np.ndarray, owned: set[int]) -> tuple[str, set[int]]:
    """Independent brute force: the ids a generated request touches, from its config form."""
    ((kind, spec),) = raw.items()
    ((key, value),) = spec.items()
    if key == "ids":
        return kind, set(value)
    classes = TASKS[value] if key == "task" else value
    assert kind == "unlearn"
    return kind, {i for i in owned if labels[i] in classes}


def replay(requests: list[dict[str, Any]], labels: np.ndarray) -> list[tuple[set[int], set[int]]]:
    owned: set[int] = set()
    unlearned: set[int] = set()
    out = []
    for raw in requests:
        kind, ids = resolve(raw, labels, owned)
        if kind == "learn":
            owned |= ids
        else:
            owned -= ids
            unlearned |= ids
        out.append((set(owned), set(unlearned)))
    return out


def kinds_of(requests: list[dict[str, Any]]) -> list[str]:
    return [next(iter(r)) for r in requests]


# ------------------------------------------------------------------ properties


settings_strategy = st.builds(
    GenerateConfig,
    n_requests=st.integers(1, 40),
    learn_chunk=st.integers(1, 12),
    first_learn=st.sampled_from([0, 0, 5, 60]),
    learn_classes=st.sampled_from(["task", "all"]),
    unlearn_ratio=st.floats(0.0, 0.8),
    unlearn_mix=st.fixed_dictionaries(
        {"task": st.integers(0, 3), "class": st.integers(0, 3), "random": st.integers(0, 3)}
    ).filter(lambda m: sum(m.values()) > 0),
    random_fraction=st.floats(0.05, 1.0),
    relearn=st.booleans(),
    seed=st.integers(0, 2**20),
)


@settings(max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(gen=settings_strategy)
def test_generated_stream_properties(gen: GenerateConfig, digits_labels: torch.Tensor) -> None:
    labels = digits_labels.numpy()
    try:
        requests = generate_requests(gen, digits_labels, 10, TASKS)
    except UserError as e:  # only the documented refusals: pool exhausted, or nothing left to learn
        msg = str(e)
        assert "\n" not in msg and msg.startswith("config key 'scenario.generate.")
        assert "learn_chunk" in msg or "first_learn" in msg or "relearn" in msg
        return
    assert len(requests) == gen.n_requests
    assert kinds_of(requests)[0] == "learn"
    ever_learned: set[int] = set()
    ever_unlearned: set[int] = set()
    blocked: set[int] = set()
    owned: set[int] = set()
    for k, raw in enumerate(requests):
        kind, ids = resolve(raw, labels, owned)
        assert ids, f"request {k} touches nothing"
        if kind == "learn":
            assert not ids & ever_learned, "a learn brings back an id learned before"
            assert not ids & ever_unlearned, "an unlearned id came back"
            first = k == 0 and gen.first_learn > 0  # the base set: across every class
            assert len(ids) == (gen.first_learn if first else gen.learn_chunk)
            classes = {int(labels[i]) for i in ids}
            assert not classes & blocked, "relearn false, yet an unlearned class came back"
            if gen.learn_classes == "task" and not first:
                assert len({c // 2 for c in classes}) == 1
            ever_learned |= ids
            owned |= ids
        else:
            assert ids <= owned, "an unlearn removes ids that are not owned"
            ((key, value),) = raw["unlearn"].items()
            if not gen.relearn and key in ("task", "classes"):
                blocked |= set(TASKS[value] if key == "task" else value)
            owned -= ids
            ever_unlearned |= ids
    # build_scenario accepts it (the generator is checked by the same rules as hand-written streams)
    sc = build_scenario(requests, digits_labels, 10)
    assert len(sc) == gen.n_requests
    assert set(sc.owned(-1).nonzero().flatten().tolist()) == owned
    for r in sc.requests:
        if r.kind == "learn":
            assert r.tasks == tuple(sorted({int(labels[i]) // 2 for i in r.ids.tolist()}))
    # seeded: the same seed gives the same stream, another seed another one
    assert generate_requests(gen, digits_labels, 10, TASKS) == requests
    # non-trivial: at least 4 ids drawn from pools of ~270, so two seeds agree with probability < 1e-8
    if sum(len(raw["learn"]["ids"]) for raw in requests if "learn" in raw) >= 4:
        try:
            other = generate_requests(gen.model_copy(update={"seed": gen.seed + 1}), digits_labels, 10, TASKS)
        except UserError:  # that seed's stream is refused (relearn false ran out of classes): also different
            other = None
        assert other != requests


def test_generator_ignores_global_rng(digits_labels: torch.Tensor) -> None:
    gen = GenerateConfig(n_requests=30, learn_chunk=5, seed=3)
    torch.manual_seed(0)
    np.random.seed(0)
    a = generate_requests(gen, digits_labels, 10, TASKS)
    torch.manual_seed(1)
    np.random.seed(1)
    random.seed(1)
    assert generate_requests(gen, digits_labels, 10, TASKS) == a


def test_relearn_false_keeps_unlearned_classes_out(digits_labels: torch.Tensor) -> None:
    gen = GenerateConfig(n_requests=40, learn_chunk=4, learn_classes="all", unlearn_ratio=0.3, relearn=False)
    gen.unlearn_mix = {"class": 1.0}
    requests = generate_requests(gen, digits_labels, 10, TASKS)
    labels = digits_labels.numpy()
    gone: set[int] = set()
    for raw in requests:
        if "unlearn" in raw:
            gone |= set(raw["unlearn"]["classes"])
        else:
            assert not {int(labels[i]) for i in raw["learn"]["ids"]} & gone
    assert gone, "the stream has class unlearns"


# ------------------------------------------------------------------ validation


def test_bad_knobs_fail_with_one_line_naming_the_key(tmp_path: Path) -> None:
    cases = [
        ("scenario.generate.n_requests=0", "scenario.generate.n_requests"),
        ("scenario.generate.learn_chunk=0", "scenario.generate.learn_chunk"),
        ("scenario.generate.learn_classes=some", "scenario.generate.learn_classes"),
        ("scenario.generate.unlearn_ratio=1", "scenario.generate.unlearn_ratio"),
        ("scenario.generate.unlearn_ratio=-0.1", "scenario.generate.unlearn_ratio"),
        ("scenario.generate.unlearn_mix={task: -1}", "scenario.generate.unlearn_mix.task"),
        ("scenario.generate.unlearn_mix={task: 0, class: 0}", "scenario.generate.unlearn_mix"),
        ("scenario.generate.unlearn_mix={tasks: 1}", "scenario.generate.unlearn_mix"),
        ("scenario.generate.random_fraction=0", "scenario.generate.random_fraction"),
        ("scenario.generate.seed=-1", "scenario.generate.seed"),
        ("scenario.generate.relearn=maybe", "scenario.generate.relearn"),
        ("scenario.generate.n_request=3", "scenario.generate.n_request"),
        ("dataset.samples=5000", "dataset.samples"),
    ]
    for item, key in cases:
        with pytest.raises(UserError) as exc:
            load_config("digits-long-200", [item])
        msg = str(exc.value)
        assert "\n" not in msg and f"'{key}'" in msg, (item, msg)
    with pytest.raises(UserError, match="only mnist1d can generate samples"):
        load_config("digits-long-200", ["dataset.samples=5000"])
    with pytest.raises(UserError, match="'dataset.samples': must be at least"):
        load_config("mnist1d-long-1000", ["dataset.samples=10"])


def test_requests_and_generate_together_are_refused(tmp_path: Path) -> None:
    raw = yaml.safe_load((CONFIG_DIR / "digits-long-200.yaml").read_text())
    raw["scenario"]["requests"] = [{"learn": {"task": 0}}]
    path = tmp_path / "both.yaml"
    path.write_text(yaml.safe_dump(raw))
    with pytest.raises(UserError) as exc:
        load_config(path)
    msg = str(exc.value)
    assert "\n" not in msg and "'scenario.requests'" in msg and "scenario.generate" in msg


def test_running_out_of_samples_says_how_many_are_needed(digits_labels: torch.Tensor) -> None:
    gen = GenerateConfig(n_requests=100, learn_chunk=40, unlearn_ratio=0.2)
    with pytest.raises(UserError) as exc:
        generate_requests(gen, digits_labels, 10, TASKS)
    msg = str(exc.value)
    assert "\n" not in msg and "'scenario.generate.learn_chunk'" in msg
    assert "dataset.samples" in msg and "the stream needs about" in msg


def test_dataset_samples_generates_mnist1d_and_changes_the_fingerprint() -> None:
    small = load_dataset("mnist1d", samples=200)
    other = load_dataset("mnist1d", samples=300)
    assert (small.n_train, small.n_test) == (160, 40)
    assert (other.n_train, other.n_test) == (240, 60)
    assert small.fingerprint != other.fingerprint
    assert load_dataset("mnist1d", samples=200).fingerprint == small.fingerprint
    with pytest.raises(UserError, match="'dataset.samples'"):
        load_dataset("digits", samples=200)


# ------------------------------------------------------------------ presets


def test_digits_long_200_builds_with_exact_length() -> None:
    prep = prepare(load_config("digits-long-200"))
    kinds = [r.kind for r in prep.scenario.requests]
    assert len(kinds) == 200
    assert 0.55 <= kinds.count("learn") / 200 <= 0.75
    specs = {next(iter(r.spec)) for r in prep.scenario.requests if r.kind == "unlearn"}
    assert specs == {"task", "classes", "ids"}


def test_mnist1d_long_1000_builds_and_set_shortens_it() -> None:
    config = load_config("mnist1d-long-1000")
    assert config.dataset.samples is not None
    dataset = fake_dataset(mnist1d_like_labels(config.dataset.samples))
    assert len(prepare(config, dataset).scenario) == 1000
    short = load_config("mnist1d-long-1000", ["scenario.generate.n_requests=20"])
    assert short.scenario.generate.n_requests == 20
    assert len(prepare(short, dataset).scenario) == 20
    assert short.hash() != config.hash()


def test_cifar10_long_50_is_a_valid_config() -> None:
    config = load_config("cifar10-long-50")
    assert config.scenario.generate.n_requests == 50 and not config.scenario.requests
    labels = torch.arange(10).repeat_interleave(5000)  # CIFAR-10's training set: 5,000 images per class
    requests = scenario_requests(config.scenario, labels, 10)
    assert len(requests) == 50


# ------------------------------------------------------------------ owned / unlearned from the events


def test_owned_matches_brute_force_replay_for_random_k(digits_labels: torch.Tensor) -> None:
    gen = GenerateConfig(n_requests=120, learn_chunk=6, unlearn_ratio=0.4, seed=7)
    requests = generate_requests(gen, digits_labels, 10, TASKS)
    sc = build_scenario(requests, digits_labels, 10)
    truth = replay(requests, digits_labels.numpy())
    n = len(sc)
    rnd = random.Random(0)
    ks = list(range(n)) + [rnd.randrange(-n, n) for _ in range(150)] + [-1, 0, n - 1, -n, 5, 4, 3, 119, 0]
    for k in ks:
        owned, unlearned = truth[k]
        assert set(sc.owned(k).nonzero().flatten().tolist()) == owned, k
        assert set(sc.unlearned(k).nonzero().flatten().tolist()) == unlearned, k
    with pytest.raises(IndexError):
        sc.owned(n)
    with pytest.raises(IndexError):
        sc.unlearned(-n - 1)
    # the returned masks are copies: a caller cannot corrupt the cursor
    sc.owned(10)[:] = True
    assert set(sc.owned(10).nonzero().flatten().tolist()) == truth[10][0]
    again = pickle.loads(pickle.dumps(sc))
    assert torch.equal(again.owned(-1), sc.owned(-1)) and torch.equal(again.unlearned(3), sc.unlearned(3))


def test_a_1000_request_stream_stores_no_per_request_masks() -> None:
    labels = mnist1d_like_labels(60_000)
    n_train = len(labels)
    gen = GenerateConfig(n_requests=1000, learn_chunk=32, unlearn_ratio=0.35)
    start = time.perf_counter()
    sc = build_scenario(generate_requests(gen, labels, 10, TASKS), labels, 10)
    seconds = time.perf_counter() - start
    assert len(sc) == 1000
    assert seconds < 10, f"building took {seconds:.1f}s"
    assert not hasattr(sc, "owned_after") and not hasattr(sc, "unlearned_after")
    for _ in range(3):  # sequential walks, as the runner and the evaluator do
        for k in range(len(sc)):
            sc.owned(k)
            sc.unlearned(k)

    def tensors(value: Any) -> list[torch.Tensor]:
        if isinstance(value, torch.Tensor):
            return [value]
        if isinstance(value, (list, tuple)):
            return [t for v in value for t in tensors(v)]
        if isinstance(value, dict):
            return [t for v in value.values() for t in tensors(v)]
        if hasattr(value, "__dataclass_fields__"):
            return [t for f in value.__dataclass_fields__ for t in tensors(getattr(value, f))]
        return []

    for name, value in vars(sc).items():
        full = [t for t in tensors(value) if t.numel() == n_train]
        assert len(full) <= 1, f"Scenario.{name} holds {len(full)} tensors of n_train length"
    held = sum(t.numel() * t.element_size() for t in tensors(vars(sc)))
    events = sum(r.ids.numel() * r.ids.element_size() for r in sc.requests)
    # the events, the task of every sample and the cursor's two masks; per-request masks would be 48 MB
    assert held <= events + n_train * (8 + 2), held
    assert held < 1000 * n_train // 10
    assert isinstance(sc, Scenario)
