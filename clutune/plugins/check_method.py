"""Conformance checks for a method: does it keep clutune's guarantees? (``clutune check-method NAME``)

The method runs on a tiny generated stream (four Gaussian classes in two tasks, seven requests: learn, class
unlearn, random unlearn, a relearn of an unlearned class, task unlearn, learn again) on the CPU, through the
real runner, three times: twice from the start with the same seed, and once restored from a checkpoint taken
mid-stream and sent through ``torch.save``/``torch.load(weights_only=True)`` as a trial checkpoint is. The data
door is instrumented: it records every unlearned id fetched after its request instead of refusing it, so one
check failing leaves the others measurable. A method that refuses the mixed stream (one that unlearns whole
tasks only) runs a task-aware stream instead, and the table says so.

Each check passes or fails with a reason:

- ``hparams``: the Hparams dataclass refuses out-of-range shared budget values with one line naming the key;
- ``finite``: every output after every request is finite;
- ``same seed``: a second run with the same seed gives identical outputs;
- ``checkpoint``: the run restored mid-stream gives the uninterrupted run's outputs;
- ``unlearned ids``: no unlearned id is fetched after its request or left in the buffer.

A failure names the method's own file and line where the offending call was made (the fetch of an unlearned id,
the raise of an error), not clutune's line that noticed it. A failure that is a consequence of another (a
nondeterministic method fails ``checkpoint`` too) says which one it follows from.
"""

from __future__ import annotations

import contextlib
import dataclasses
import io
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any

import torch

from clutune.clu.access import TrainAccess
from clutune.clu.call_site import site_of_stack, site_of_traceback
from clutune.clu.methods import METHODS, get_method, method_problem
from clutune.clu.methods.base import Method
from clutune.clu.runner import PrivacyViolation, iter_run
from clutune.core.hparams import build_hparams
from clutune.core.scenarios import Request, build_scenario
from clutune.data.dataset import Dataset, make_dataset
from clutune.errors import UserError
from clutune.models import MLP

CHECKS = ("hparams", "finite", "same seed", "checkpoint", "unlearned ids")
# Small budgets so a check of any method takes seconds; set only where the method has the field.
TINY_BUDGET = {
    "epochs_per_learn": 2,
    "iters_per_unlearn": 6,
    "batch_size": 16,
    "buffer_size": 40,
    "epochs": 2,
}
# Out-of-range values of the budget every method shares (BaseHparams): each must be refused in one line.
OUT_OF_RANGE = {"batch_size": 0, "epochs_per_learn": 0, "iters_per_unlearn": -1, "lr": -1.0}
PER_CLASS_TRAIN, PER_CLASS_TEST, FEATURES = 40, 10, 8


@dataclass(frozen=True)
class CheckResult:
    name: str
    passed: bool
    reason: str
    # The failed check this failure is a consequence of (a nondeterministic method cannot restore a checkpoint
    # to identical outputs either): fix that one first.
    follows: str | None = None


@dataclass
class MethodReport:
    """What ``check_method`` found: one result per check, in :data:`CHECKS` order."""

    method: str
    origin: str  # clutune (built in) or the package that provides the method
    stream: str  # which stream ran, and why when it is not the mixed one
    results: list[CheckResult]

    @property
    def passed(self) -> bool:
        return all(r.passed for r in self.results)

    def failed(self) -> list[str]:
        return [r.name for r in self.results if not r.passed]

    def table(self) -> str:
        """The plain-text table ``clutune check-method`` prints."""
        width = max(len(r.name) for r in self.results)
        lines = [f"method {self.method} ({self.origin}); stream: {self.stream}", ""]
        lines += [f"{'check':<{width}}  result  reason", f"{'-' * width}  ------  ------"]
        lines += [f"{r.name:<{width}}  {'pass' if r.passed else 'FAIL':<6}  {_reason(r)}" for r in self.results]
        own = [r.name for r in self.results if not r.passed and r.follows is None]
        verdict = "all checks passed" if self.passed else f"failed: {', '.join(self.failed())}"
        if not self.passed and len(own) < len(self.failed()):
            verdict += f" (fix {', '.join(own)} first: the others follow from it)"
        return "\n".join([*lines, "", verdict])


def _reason(result: CheckResult) -> str:
    return f"follows from {result.follows}: {result.reason}" if result.follows else result.reason


def tiny_dataset() -> Dataset:
    """Four well-separated Gaussian classes, generated from a fixed seed (no file, no download)."""
    g = torch.Generator().manual_seed(0)
    centres = torch.randn(4, FEATURES, generator=g) * 3

    def split(per_class: int) -> tuple[torch.Tensor, torch.Tensor]:
        y = torch.arange(4).repeat_interleave(per_class)
        return centres[y] + torch.randn(len(y), FEATURES, generator=g), y

    x_train, y_train = split(PER_CLASS_TRAIN)
    x_test, y_test = split(PER_CLASS_TEST)
    return make_dataset("check-method-blobs", x_train, y_train, x_test, y_test)


def _ids(y: torch.Tensor, cls: int, part: int) -> list[int]:
    """First (part 0) or second (part 1) half of class ``cls``'s training ids."""
    ids = (y == cls).nonzero().flatten().tolist()
    half = len(ids) // 2
    return ids[:half] if part == 0 else ids[half:]


def mixed_stream(y: torch.Tensor) -> list[dict[str, Any]]:
    """Every request kind: learn, class unlearn, random unlearn, relearn of an unlearned class, task unlearn."""
    return [
        {"learn": {"ids": _ids(y, 0, 0) + _ids(y, 1, 0)}},
        {"learn": {"ids": _ids(y, 2, 0) + _ids(y, 3, 0)}},
        {"unlearn": {"classes": [1]}},
        {"unlearn": {"fraction": 0.2}},
        {"learn": {"ids": _ids(y, 1, 1)}},  # new samples of the unlearned class 1
        {"unlearn": {"task": 1}},
        {"learn": {"ids": _ids(y, 0, 1) + _ids(y, 2, 1) + _ids(y, 3, 1)}},
    ]


def task_stream() -> list[dict[str, Any]]:
    """Whole tasks (one class each) only, for methods that serve nothing else: learn, unlearn a task, learn."""
    return [{"learn": {"task": 0}}, {"learn": {"task": 1}}, {"unlearn": {"task": 1}}, {"learn": {"task": 2}}]


class AuditedAccess(TrainAccess):
    """The data door with a recorder: an unlearned id fetched after its request is recorded and served (on this
    generated data) instead of refused, so the run goes on and every other check can still be measured."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.request = -1
        self.late: list[tuple[int, int, str | None]] = []  # (request, id, the method's call site) per late fetch

    def fetch(
        self, ids: torch.Tensor, generator: torch.Generator | None = None, augment: bool = True
    ) -> tuple[torch.Tensor, torch.Tensor]:
        ids = ids.cpu()
        late = ids[self._blocked[ids]]
        if not len(late):
            return super().fetch(ids, generator, augment)
        site = site_of_stack()
        self.late += [(self.request, int(i), site) for i in late[:5]]
        saved = self._blocked.clone()
        self._blocked[late] = False
        try:
            return super().fetch(ids, generator, augment)
        finally:
            self._blocked = saved


@dataclass
class _Run:
    outputs: list[torch.Tensor]  # per request: logits on every train and test input
    late: list[tuple[int, int, str | None]]
    error: str | None  # why the run stopped early
    privacy_error: str | None  # a buffer that kept an unlearned id
    state_at_mid: bytes | None


class _Harness:
    def __init__(self, cls: type[Method], hp: Any, dataset: Dataset, requests: list[Request]) -> None:
        self.cls, self.hp, self.dataset, self.requests = cls, hp, dataset, requests
        self.mid = (len(requests) - 1) // 2  # the checkpoint is taken after this request
        self.inputs = torch.cat([dataset.x_train, dataset.x_test])

    def build(self, seed: int) -> tuple[Method, AuditedAccess]:
        torch.manual_seed(seed)  # the model's initial weights, as experiment.build_method seeds them
        model = MLP(FEATURES, self.dataset.num_classes, [32])
        access = AuditedAccess(self.dataset.x_train, self.dataset.y_train, self.dataset.inputs)
        method = self.cls(model, self.hp, access, seed)
        for request in self.requests:
            method.check_request(request)
        return method, access

    def evaluate(self, request: Any, model: torch.nn.Module) -> dict[str, Any]:
        with torch.no_grad():
            return {"request": request.index, "logits": model(self.inputs).detach().clone()}

    def run(self, seed: int, restore: bytes | None = None) -> _Run:
        method, access = self.build(seed)
        start = 0
        if restore is not None:
            state = torch.load(io.BytesIO(restore), weights_only=True)
            method.load_state_dict(state)
            start = self.mid + 1
        result = _Run([], access.late, None, None, None)

        @contextlib.contextmanager
        def per_request() -> Iterator[None]:
            access.request = start + len(result.outputs)
            yield

        try:
            for row in iter_run(method, self.requests, self.evaluate, start, per_request):
                result.outputs.append(row["logits"])
                if row["request"] == self.mid and restore is None:
                    buffer = io.BytesIO()
                    torch.save(method.state_dict(), buffer)
                    result.state_at_mid = buffer.getvalue()
        except PrivacyViolation as e:
            result.privacy_error = str(e)
        except Exception as e:  # the method's own failure is what this check reports
            where = start + len(result.outputs)
            site = site_of_traceback(e.__traceback__)
            message = str(e).strip().splitlines()[0] if str(e).strip() else ""
            result.error = f"request {where} raised {type(e).__name__}{f' at {site}' if site else ''}: {message}"
        return result


def _hparams_check(cls: type[Method], name: str) -> CheckResult:
    prefix = f"methods.{name}"
    for key, bad in OUT_OF_RANGE.items():
        try:
            build_hparams(cls.Hparams, {key: bad}, prefix=prefix)
        except UserError as e:
            text = str(e)
            if "\n" in text or f"{prefix}.{key}" not in text:
                return CheckResult("hparams", False, f"{key}={bad} refused, but not in one line naming {prefix}.{key}")
            continue
        except Exception as e:
            return CheckResult("hparams", False, f"{key}={bad} raised {type(e).__name__}, not clutune's UserError")
        return CheckResult("hparams", False, f"{key}={bad} accepted (its declared bounds must refuse it)")
    return CheckResult("hparams", True, f"refused {', '.join(f'{k}={v}' for k, v in OUT_OF_RANGE.items())}")


def _identical(x: torch.Tensor, y: torch.Tensor) -> bool:
    """Bitwise equal, NaN where the other has NaN (a diverged run repeated exactly is still repeated)."""
    return torch.equal(x.isnan(), y.isnan()) and torch.equal(x.nan_to_num(0.0), y.nan_to_num(0.0))


def _same(a: list[torch.Tensor], b: list[torch.Tensor], offset: int = 0) -> str | None:
    """None when equal, else where the first difference is."""
    for k, (x, y) in enumerate(zip(a, b, strict=False)):
        if not _identical(x, y):
            diff = float((x - y).abs().nan_to_num(float("inf")).max())
            return f"outputs differ after request {k + offset} (max |diff| {diff:.3g})"
    if len(a) != len(b):
        return f"one run has {len(a)} requests, the other {len(b)}"
    return None


def tiny_hparams(cls: type[Method], name: str) -> Any:
    """The method's defaults with the small budget of :data:`TINY_BUDGET` where it has those fields."""
    fields = {f.name for f in dataclasses.fields(cls.Hparams)}
    return build_hparams(cls.Hparams, {k: v for k, v in TINY_BUDGET.items() if k in fields}, prefix=f"methods.{name}")


def check_method(method: str | type[Method], seed: int = 0) -> MethodReport:
    """Run every check on ``method`` (a registered name, or a class, for an author's work in progress).

    An unknown name or a class that breaks the method contract is a UserError (``clutune check-method`` exits 2);
    a failed check is a row of the report (exit 1).
    """
    if isinstance(method, str):
        cls, name, origin = get_method(method), method, METHODS.origin(method)
    else:
        name = getattr(method, "name", None) or getattr(method, "__name__", repr(method))
        problem = method_problem(method, name)
        if problem is not None:
            raise UserError(f"method {name!r}: {problem}")
        cls, origin = method, f"class {method.__module__}.{method.__qualname__}"
    hp = tiny_hparams(cls, name)
    dataset = tiny_dataset()
    threads = torch.get_num_threads()
    torch.set_num_threads(1)  # one thread: the reference outputs do not depend on the machine's core count
    try:
        stream, requests = (
            "mixed (learn, class, random and task unlearn, relearn)",
            _requests(mixed_stream(dataset.y_train), dataset, 2),
        )
        try:
            _Harness(cls, hp, dataset, requests).build(seed)
        except UserError as e:
            stream = f"task-aware (the method refuses the mixed one: {str(e).rsplit('): ', 1)[-1]})"
            requests = _requests(task_stream(), dataset, 1)
        harness = _Harness(cls, hp, dataset, requests)
        first, second = harness.run(seed), harness.run(seed)
        restored = harness.run(seed, first.state_at_mid) if first.state_at_mid is not None else None
    finally:
        torch.set_num_threads(threads)
    results = [_hparams_check(cls, name), *_run_checks(first, second, restored, harness.mid)]
    return MethodReport(name, origin, stream, results)


def _requests(raw: list[dict[str, Any]], dataset: Dataset, classes_per_task: int) -> list[Request]:
    return build_scenario(raw, dataset.y_train, dataset.num_classes, classes_per_task=classes_per_task).requests


def _run_checks(first: _Run, second: _Run, restored: _Run | None, mid: int) -> list[CheckResult]:
    stopped = first.error or first.privacy_error
    n = len(first.outputs)
    if first.error:
        finite = CheckResult("finite", False, f"the run stopped: {first.error}")
    else:
        bad = [k for k, out in enumerate(first.outputs) if not torch.isfinite(out).all()]
        finite = CheckResult(
            "finite",
            not bad,
            f"non-finite outputs after request {bad[0]}" if bad else f"outputs finite after all {n} requests",
        )
    if stopped:
        cause = "finite" if first.error else "unlearned ids"
        same = CheckResult("same seed", False, f"not measurable, the run stopped: {stopped}", cause)
        ckpt = CheckResult("checkpoint", False, f"not measurable, the run stopped: {stopped}", cause)
    else:
        diff = _same(first.outputs, second.outputs) or (second.error and f"the second run: {second.error}")
        same = CheckResult("same seed", not diff, diff or f"identical outputs after all {n} requests")
        if restored is None or restored.error:
            why = restored.error if restored is not None else "no checkpoint was taken"
            ckpt = CheckResult("checkpoint", False, f"the restored run failed: {why}")
        else:
            diff = _same(first.outputs[mid + 1 :], restored.outputs, offset=mid + 1)
            ok = f"restored after request {mid}: identical outputs for requests {mid + 1}..{n - 1}"
            # A method that does not repeat itself from the start cannot repeat itself from a checkpoint either.
            ckpt = CheckResult("checkpoint", not diff, diff or ok, "same seed" if diff and not same.passed else None)
    late = first.late + second.late + (restored.late if restored else [])
    if late:
        k, i, site = late[0]
        where = f", called at {site}" if site else ""
        privacy = CheckResult("unlearned ids", False, f"fetched id {i} at request {k}, after it was unlearned{where}")
    elif first.privacy_error:
        privacy = CheckResult("unlearned ids", False, first.privacy_error)
    else:
        privacy = CheckResult("unlearned ids", True, "none fetched after its request, none left in the buffer")
    return [finite, same, ckpt, privacy]
