"""`clutune check-method` / clutune.plugins.check_method: every built-in method passes; a method built to break one
guarantee fails that check, by name; the data door hands a method no tensor of all samples."""

from __future__ import annotations

import os
import subprocess
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import torch
import torch.nn.functional as F

from clutune.clu.access import TrainAccess
from clutune.clu.methods import BUILTIN_METHODS, get_method
from clutune.clu.methods.base import hparam
from clutune.clu.methods.er import ER
from clutune.clu.methods.replay import ReplayHparams, supervised_epochs
from clutune.errors import UserError
from clutune.plugins.check_method import (
    CHECKS,
    _Harness,
    _requests,
    check_method,
    mixed_stream,
    tiny_dataset,
    tiny_hparams,
)

ROOT = Path(__file__).resolve().parents[1]


@pytest.mark.parametrize("name", sorted(BUILTIN_METHODS))
def test_every_builtin_method_passes(name):
    report = check_method(name)
    assert [r.name for r in report.results] == list(CHECKS)
    assert report.passed, report.table()


class KeepsUnlearned(ER):
    """Keeps every id it ever learned and trains on all of them at each learn: unlearned ones included."""

    name = "keeps_unlearned"

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.kept = torch.empty(0, dtype=torch.int64)

    def learn(self, request: Any) -> None:
        self.kept = torch.cat([self.kept, request.ids])
        supervised_epochs(self, self.kept, lambda x, y: F.cross_entropy(self.model(x), y))

    def extra_state(self) -> dict[str, Any]:
        return {"kept": self.kept.clone()}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.kept = state["kept"].clone()


class NotDeterministic(ER):
    """Perturbs its weights with noise from an unseeded source after every learn."""

    name = "not_deterministic"

    def learn(self, request: Any) -> None:
        super().learn(request)
        noise = torch.Generator().manual_seed(int.from_bytes(os.urandom(7), "little"))
        with torch.no_grad():
            for p in self.model.parameters():
                p.add_(torch.randn(p.shape, generator=noise) * 1e-3)


class ForgetsState(ER):
    """Anneals its learning rate over requests with a counter its checkpoint does not hold."""

    name = "forgets_state"

    def __init__(self, *args: Any) -> None:
        super().__init__(*args)
        self.requests_seen = 0

    def learn(self, request: Any) -> None:
        self.requests_seen += 1
        super().learn(request)

    def optimizer(self, steps: int, lr: float | None = None) -> tuple[torch.optim.Optimizer, Any]:
        return super().optimizer(steps, (self.hp.lr if lr is None else lr) / self.requests_seen)


@dataclass
class LaxHparams(ReplayHparams):
    batch_size: int = hparam(128)  # declared again without its bound: the shared budget's range is not enforced


class LaxRanges(ER):
    name = "lax_ranges"
    Hparams = LaxHparams


class Diverges(ER):
    """Sets a weight to NaN at its second learn."""

    name = "diverges"

    def learn(self, request: Any) -> None:
        super().learn(request)
        if request.index == 1:
            with torch.no_grad():
                next(self.model.parameters()).view(-1)[0] = float("nan")


@pytest.mark.parametrize(
    ("method", "broken", "reason"),
    [
        (KeepsUnlearned, {"unlearned ids"}, "after it was unlearned"),
        (NotDeterministic, {"same seed", "checkpoint"}, "outputs differ after request 0"),
        (ForgetsState, {"checkpoint"}, "outputs differ after request 4"),
        (LaxRanges, {"hparams"}, "batch_size=0 accepted"),
        (Diverges, {"finite"}, "non-finite outputs after request 1"),
    ],
)
def test_a_method_built_to_break_a_check_fails_that_check(method, broken, reason):
    report = check_method(method)
    assert set(report.failed()) == broken, report.table()
    table = report.table()
    for name in broken:
        assert any(line.startswith(name) and "FAIL" in line for line in table.splitlines()), table
    assert reason in table
    assert f"failed: {', '.join(n for n in CHECKS if n in broken)}" in table


def test_a_class_that_breaks_the_method_contract_is_a_user_error():
    with pytest.raises(UserError, match="NoHparams.Hparams is not a dataclass subclassing"):
        check_method(type("NoHparams", (ER,), {"name": "no_hparams", "Hparams": dict}))
    with pytest.raises(UserError, match="not a subclass of clutune.clu.methods.Method"):
        check_method(type("NotAMethod", (), {"name": "x"}))


def test_cli_exit_codes_and_table():
    env = {**os.environ, "PYTHONPATH": str(ROOT)}
    ok = subprocess.run(
        [sys.executable, "-m", "clutune.cli", "check-method", "er"], capture_output=True, text=True, env=env
    )
    assert ok.returncode == 0, ok.stderr
    assert "unlearned ids  pass" in ok.stdout and "all checks passed" in ok.stdout
    bad = subprocess.run(
        [sys.executable, "-m", "clutune.cli", "check-method", "nope"], capture_output=True, text=True, env=env
    )
    assert bad.returncode == 2
    assert bad.stderr.strip().splitlines() == [bad.stderr.strip()] and "unknown method 'nope'" in bad.stderr


def _tensors(obj: Any, depth: int = 0) -> list[tuple[str, torch.Tensor]]:
    """Every tensor reachable through public attributes (and public properties), a few levels deep."""
    found = []
    for attr in dir(obj):
        if attr.startswith("_"):
            continue
        try:
            value = getattr(obj, attr)
        except Exception:
            continue
        if isinstance(value, torch.Tensor):
            found.append((attr, value))
        elif (
            depth < 2
            and not isinstance(value, (torch.nn.Module, type, str, int, float, bool))
            and hasattr(value, "__dict__")
            and not callable(value)
        ):
            found += [(f"{attr}.{a}", t) for a, t in _tensors(value, depth + 1)]
    return found


@pytest.mark.parametrize("name", ["er", "ugclu", "sfron"])
def test_a_method_is_handed_no_tensor_of_all_samples(name):
    """What a method holds (its data door, buffer, generator, hyperparameters) exposes no tensor of the training
    inputs or labels: the door's fetch by id is the only way to them."""
    ds = tiny_dataset()
    cls = get_method(name)
    harness = _Harness(cls, tiny_hparams(cls, name), ds, _requests(mixed_stream(ds.y_train), ds, 2))
    method, access = harness.build(0)
    assert isinstance(method.data, TrainAccess)
    for where, t in _tensors(method):
        for whole in (ds.x_train, ds.y_train):
            assert t.untyped_storage().data_ptr() != whole.untyped_storage().data_ptr(), where
            assert not (t.shape == whole.shape and torch.equal(t, whole)), where
    for attr in ("x", "y", "to_inputs"):
        assert not hasattr(method.data, attr)
    blocked = method.data.blocked
    blocked[:] = True  # a copy: writing to it unblocks or blocks nothing
    x, y = method.data.fetch(torch.tensor([0, 1]))
    assert torch.equal(y, ds.y_train[:2])


class FetchesPositions(ER):
    """Replays by the buffer's sample positions as if they were ids: the mistake ``sample()`` invites."""

    name = "fetches_positions"

    def learn(self, request: Any) -> None:
        super().learn(request)
        if len(self.buffer):
            positions = self.buffer.sample(8, self.generator)
            self.data.fetch(positions)  # the offending call: positions are not ids


class RaisesInLearn(ER):
    """Fails in its own code at the learn of request 4."""

    name = "raises_in_learn"

    def learn(self, request: Any) -> None:
        if request.index == 4:
            raise ValueError("a bug in the method")
        super().learn(request)


def _line_of(cls: type, text: str) -> str:
    """``file:line`` of the first line of ``cls``'s source holding ``text``."""
    import inspect

    lines, first = inspect.getsourcelines(cls)
    offset = next(i for i, line in enumerate(lines) if text in line)
    return f"{inspect.getsourcefile(cls)}:{first + offset}"


def test_a_fetched_unlearned_id_names_the_methods_own_file_and_line():
    report = check_method(FetchesPositions)
    assert report.failed() == ["unlearned ids"], report.table()
    site = _line_of(FetchesPositions, "self.data.fetch(positions)")
    assert f"after it was unlearned, called at {site}" in report.table()


def test_an_error_in_a_method_names_its_file_and_line_and_what_follows_from_it():
    report = check_method(RaisesInLearn)
    site = _line_of(RaisesInLearn, 'raise ValueError("a bug in the method")')
    finite, same, ckpt = report.results[1:4]
    assert not finite.passed and f"request 4 raised ValueError at {site}: a bug in the method" in finite.reason
    assert same.follows == "finite" and ckpt.follows == "finite"
    row = next(line for line in report.table().splitlines() if line.startswith("same seed"))
    assert row.split()[2:6] == ["FAIL", "follows", "from", "finite:"] and "not measurable" in row


def test_a_nondeterministic_method_fails_checkpoint_as_a_consequence():
    report = check_method(NotDeterministic)
    same, ckpt = report.results[2:4]
    assert same.follows is None and ckpt.follows == "same seed"
    table = report.table()
    row = next(line for line in table.splitlines() if line.startswith("checkpoint"))
    assert " ".join(row.split()[1:]).startswith("FAIL follows from same seed: outputs differ"), table
    assert table.splitlines()[-1] == "failed: same seed, checkpoint (fix same seed first: the others follow from it)"
