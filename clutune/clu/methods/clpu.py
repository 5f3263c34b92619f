"""CLPU-DER++ (Liu et al., CoLLAs 2022): exact unlearning of whole tasks by keeping them out of the main network.

Every learned task starts temporary, in a side network: a copy of the main network trained DER++-style on the
task (CE on D_L + alpha * MSE to stored logits + beta * CE on buffer entries of permanent tasks only). The
evaluated model is :class:`SideNetworks`: each temporary task's classes are answered by its side network, every
other class by the main network. Nothing of a temporary task reaches the main network or another side
network, so unlearning it is deleting its side network: the model's outputs are then exactly those from before
it was learned. A task becomes permanent once ``merge_after`` further tasks have been learned: the main
network distils its side network (stored logits + labels of its buffer entries) while replaying the permanent
tasks, and the side network is deleted. From then on it cannot be unlearned, nor can anything below a whole
task, so :meth:`CLPU.check_request` refuses such streams before the run starts.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass
from typing import Any

import torch
import torch.nn.functional as F
from torch import nn

from clutune.clu.access import TrainAccess
from clutune.clu.methods.base import BaseHparams, Method, hparam
from clutune.clu.methods.replay import output_dim, replay_batch, sgd, supervised_epochs
from clutune.clu.training import steps_per_epoch
from clutune.errors import UserError


@dataclass
class CLPUHparams(BaseHparams):
    buffer_size: int = hparam(5000, ge=0)
    alpha: float = hparam(0.1, ge=0)  # logit matching (DER++)
    beta: float = hparam(0.5, ge=0)  # label replay (DER++)
    merge_after: int = hparam(3, ge=0)  # further tasks learned before a task is merged into the main network


class SideNetworks(nn.Module):
    """The main network, with the logits of each temporary task's classes taken from that task's side network."""

    def __init__(self, main: nn.Module) -> None:
        super().__init__()
        self.main = main
        self.sides = nn.ModuleDict()
        self.classes: dict[str, list[int]] = {}  # side network key (the task) -> the classes it answers

    def attach(self, task: int, side: nn.Module, classes: list[int]) -> None:
        self.sides[str(task)] = side
        self.classes[str(task)] = classes

    def detach(self, task: int) -> None:
        del self.sides[str(task)]
        del self.classes[str(task)]

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        out = self.main(x)
        for key, side in self.sides.items():
            cls = torch.tensor(self.classes[key], dtype=torch.int64, device=out.device)
            out = out.index_copy(1, cls, side(x).index_select(1, cls))
        return out


def age_tasks(ages: dict[int, int], new: int, merge_after: int) -> list[int]:
    """Count one more learned task for every temporary task, add ``new``; pop and return those due to merge."""
    for t in ages:
        ages[t] += 1
    ages[new] = 0
    due = [t for t, age in ages.items() if age >= merge_after]
    for t in due:
        del ages[t]
    return due


class CLPU(Method):
    name = "clpu"
    exact = True
    Hparams = CLPUHparams
    hp: CLPUHparams
    model: SideNetworks

    def __init__(self, model: nn.Module, hp: BaseHparams, data: TrainAccess, seed: int) -> None:
        super().__init__(SideNetworks(model), hp, data, seed)
        self.ages: dict[int, int] = {}  # temporary task -> tasks learned since
        self.task_of = torch.full((len(data),), -1, dtype=torch.int64)  # task of every id this method learned
        self.planned: dict[int, int] = {}  # check_request's dry run of ``ages`` over the whole stream

    def buffer_logits_dim(self) -> int | None:
        return output_dim(self.model, self.data)

    def check_request(self, request: Any) -> None:
        if request.kind == "learn":
            if not request.whole_tasks or len(request.tasks) != 1:
                raise UserError(
                    f"request {request.index} (learn {request.spec}): clpu learns exactly one whole task per request"
                )
            age_tasks(self.planned, request.tasks[0], self.hp.merge_after)
        else:
            self.refuse_unless_temporary(request, self.planned)
            for t in request.tasks:
                del self.planned[t]

    def refuse_unless_temporary(self, request: Any, temporary: dict[int, int]) -> None:
        where = f"request {request.index} (unlearn {request.spec})"
        if not request.whole_tasks:
            raise UserError(f"clpu cannot serve {where}: it unlearns whole temporary tasks only")
        for t in request.tasks:
            if t not in temporary:
                raise UserError(
                    f"clpu cannot serve {where}: task {t} was merged into the main network after "
                    f"merge_after={self.hp.merge_after} further tasks; it unlearns whole temporary tasks only"
                )

    def permanent_positions(self) -> torch.Tensor:
        """Buffer positions of permanent tasks: the only entries a side network or the main network may replay."""
        tasks = self.task_of[self.buffer.ids]
        return ((tasks >= 0) & ~torch.isin(tasks, torch.tensor(list(self.ages), dtype=torch.int64))).nonzero()[:, 0]

    def der_loss(self, net: nn.Module, pool: torch.Tensor) -> torch.Tensor | None:
        """alpha * MSE(logits, stored logits) + beta * CE on two batches from ``pool``; None for an empty pool."""
        first = replay_batch(self, pool)
        if first is None:
            return None
        x, _, pos = first
        loss = self.hp.alpha * F.mse_loss(net(x), self.buffer.logits[pos].to(x.device))
        x, y, _ = replay_batch(self, pool)
        return loss + self.hp.beta * F.cross_entropy(net(x), y)

    def learn(self, request: Any) -> None:
        task = request.tasks[0]
        side = copy.deepcopy(self.model.main).train()
        permanent = self.permanent_positions()
        seen = torch.zeros(self.buffer.logits.shape[1], dtype=torch.bool)

        def loss(x: torch.Tensor, y: torch.Tensor) -> torch.Tensor:
            seen[y.cpu()] = True
            out = F.cross_entropy(side(x), y)
            replay = self.der_loss(side, permanent)
            return out if replay is None else out + replay

        supervised_epochs(self, request.ids, loss, params=side.parameters())
        self.model.attach(task, side, seen.nonzero()[:, 0].tolist())
        side.eval()
        with torch.no_grad():
            logits = torch.cat([side(self.data.fetch(c, augment=False)[0]) for c in request.ids.split(1024)])
        self.buffer.add(request.ids, logits)
        self.task_of[request.ids.cpu()] = task
        steps = self.hp.epochs_per_learn * steps_per_epoch(len(request.ids), self.hp.batch_size)
        for done in age_tasks(self.ages, task, self.hp.merge_after):
            self.merge(done, steps)

    def merge(self, task: int, steps: int) -> None:
        """Distil the side network of ``task`` into the main network (its buffer entries' stored logits and
        labels), replaying the permanent tasks; then delete the side network."""
        main = self.model.main
        own = (self.task_of[self.buffer.ids] == task).nonzero()[:, 0]
        permanent = self.permanent_positions()  # ``task`` is already out of ``ages``: exclude it here
        permanent = permanent[self.task_of[self.buffer.ids[permanent]] != task]
        opt, sched = sgd(self, steps, params=main.parameters())
        main.train()
        for _ in range(steps):
            terms = [t for t in (self.der_loss(main, own), self.der_loss(main, permanent)) if t is not None]
            if not terms:
                break
            opt.zero_grad(set_to_none=True)
            torch.stack(terms).sum().backward()
            opt.step()
            sched.step()
        self.model.detach(task)

    def unlearn(self, request: Any) -> None:
        self.refuse_unless_temporary(request, self.ages)
        for t in request.tasks:
            self.model.detach(t)
            del self.ages[t]
        self.task_of[request.ids.cpu()] = -1

    def extra_state(self) -> dict[str, Any]:
        return {"ages": dict(self.ages), "task_of": self.task_of.clone(), "classes": dict(self.model.classes)}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Rebuild the side networks first, so the composite's state dict has somewhere to load into."""
        for key in list(self.model.sides):
            self.model.detach(int(key))
        for key, classes in state["extra"]["classes"].items():
            self.model.attach(int(key), copy.deepcopy(self.model.main), list(classes))
        super().load_state_dict(state)

    def load_extra_state(self, state: dict[str, Any]) -> None:
        self.ages = dict(state["ages"])
        self.task_of = state["task_of"].clone()
