"""The method contract: a model, a guarded data door, an optional buffer, and learn/unlearn per request.

Methods never evaluate or log; the runner does, so every method is measured the same way and none can grade
itself. Hyperparameters are a dataclass whose field names are the config keys and the search-space names, so
one name serves the YAML, ``--set``, the sweep and the MLflow params; each declares the bounds it must stay
within (:func:`hparam`).
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any, ClassVar

import torch
from torch import nn

from clutune.clu.access import TrainAccess
from clutune.clu.buffer import ReservoirBuffer


def hparam(default: Any, *, says: str | None = None, **bounds: float) -> Any:
    """A hyperparameter with the bounds it must stay within (``ge``, ``gt``, ``le``, ``lt``) and, when the
    generic "value ... is out of range" is not enough, its own message.

    The library only declares them (this module imports torch and the standard library alone); the platform
    checks every value against them when it builds the hyperparameters (clutune.core.hparams). A subclass that
    changes a default with a plain field keeps the bounds declared here.
    """
    return field(default=default, metadata={"bounds": bounds, "says": says})


@dataclass
class BaseHparams:
    """The budget every method shares, so comparisons spend the same passes over the request data.

    Subclass it as a ``@dataclass`` with your own fields: each field is a config key
    (``methods.<name>.<field>``), a ``--set`` name and a search-space name; declare a field's bounds with
    :func:`hparam` and every value is checked against them before any work starts. A field named ``buffer_size``
    gives the method a reservoir buffer (:attr:`Method.buffer`) of that many ids.
    """

    lr: float = hparam(0.01, ge=0)
    batch_size: int = hparam(128, ge=1, says="must be at least 1")
    epochs_per_learn: int = hparam(20, ge=1, says="must be at least 1")
    iters_per_unlearn: int = hparam(200, ge=0)
    momentum: float = 0.9
    weight_decay: float = 5e-4


class Method:
    """Subclass this to add a method: set ``name`` and ``Hparams``, implement :meth:`learn` and :meth:`unlearn`.

    The runner builds the method once per run and calls :meth:`learn` or :meth:`unlearn` once per request, in
    order; it evaluates the model after each, so a method never evaluates or logs. Everything a method trains on
    comes through :attr:`data` by id (:class:`~clutune.clu.access.TrainAccess`), which refuses every id
    unlearned so far: the privacy guarantee holds whatever the method's code does. Between requests the runner may
    checkpoint (:meth:`state_dict`) and a resumed run restores it, so a method must keep all of its state there.

    Attributes:
        model: the network being trained (``torch.nn.Module``), already on the run's device.
        hp: this run's hyperparameters, an instance of ``Hparams``.
        data: the data door: ``data.fetch(ids)`` returns inputs and labels of owned, never-unlearned ids.
        generator: the method's only source of randomness, seeded by the run seed, saved in checkpoints.
        buffer: a :class:`~clutune.clu.buffer.ReservoirBuffer` of ids when ``Hparams`` has a ``buffer_size``
            field, else None. The runner purges unlearned ids from it before each unlearn request.
    """

    name: ClassVar[str]
    Hparams: ClassVar[type[BaseHparams]] = BaseHparams
    # Hyperparameters whose defaults are the config's oracle recipe (oracle.<same name>), for methods that
    # stand in for the oracle.
    follows_oracle: ClassVar[tuple[str, ...]] = ()
    # True where unlearning is exact by construction (the model is then one that never trained on the forgotten
    # data): comparison tables show such a method as the floor and rank the approximate methods among themselves,
    # since an exact retrain is the oracle's own recipe and would otherwise be "best" in every KL column.
    exact: ClassVar[bool] = False
    # Files the method ships as package data next to its module, found with importlib.resources and read before
    # clutune's own: a search space (a YAML file name, e.g. "search_space.yaml") and a folder of tuned defaults
    # holding one <dataset>.yaml of hyperparameters per dataset (e.g. "tuned"). None: clutune's files only.
    search_space: ClassVar[str | None] = None
    tuned_defaults: ClassVar[str | None] = None

    def __init__(self, model: nn.Module, hp: BaseHparams, data: TrainAccess, seed: int) -> None:
        self.model = model
        self.hp = hp
        self.data = data
        self.generator = torch.Generator().manual_seed(seed)
        size = getattr(hp, "buffer_size", None)
        self.buffer: ReservoirBuffer | None = (
            ReservoirBuffer(size, seed=seed, logits_dim=self.buffer_logits_dim()) if size is not None else None
        )

    def buffer_logits_dim(self) -> int | None:
        """Width of a logits row kept beside each buffered id (DER++ keeps the model's outputs), or None."""
        return None

    def learn(self, request: Any) -> None:
        """Train on the new ids ``request.ids`` (a :class:`~clutune.core.scenarios.Request` of kind learn).

        Fetch their data with ``self.data.fetch(ids, self.generator)``; the ids owned from earlier requests stay
        fetchable too (replay), unlearned ones never.
        """
        raise NotImplementedError

    def unlearn(self, request: Any) -> None:
        """Remove the influence of ``request.ids`` (kind unlearn). They are fetchable during this call only (for
        ascent on them, say): the buffer is purged of them before it, and the data door refuses them after it."""
        raise NotImplementedError

    def check_request(self, request: Any) -> None:
        """Refuse a request this method cannot serve (raise a UserError) before the run starts, instead of
        failing midway through a stream: e.g. a method that unlearns whole tasks only."""

    def optimizer(self, steps: int, lr: float | None = None) -> tuple[torch.optim.Optimizer, Any]:
        """SGD with momentum and cosine annealing over the request, rebuilt at every request."""
        opt = torch.optim.SGD(
            self.model.parameters(),
            lr=self.hp.lr if lr is None else lr,
            momentum=self.hp.momentum,
            weight_decay=self.hp.weight_decay,
        )
        return opt, torch.optim.lr_scheduler.CosineAnnealingLR(opt, T_max=max(1, steps))

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to continue the stream bit for bit: model, buffer, RNG, method extras."""
        return {
            "model": copy.deepcopy(self.model.state_dict()),
            "buffer": None if self.buffer is None else self.buffer.state_dict(),
            "generator": self.generator.get_state(),
            "extra": self.extra_state(),
        }

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Continue from :meth:`state_dict`'s output, as a resumed trial does."""
        self.model.load_state_dict(state["model"])
        if self.buffer is not None:
            self.buffer.load_state_dict(state["buffer"])
        self.generator.set_state(state["generator"])
        self.load_extra_state(state["extra"])

    def extra_state(self) -> dict[str, Any]:
        """The method's own state beyond model, buffer and generator (tensors, numbers, lists, dicts), saved
        in every checkpoint: without it a resumed run would not continue bit for bit (``check-method`` checks)."""
        return {}

    def load_extra_state(self, state: dict[str, Any]) -> None:
        """Restore what :meth:`extra_state` returned."""
