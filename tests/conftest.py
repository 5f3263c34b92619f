"""What the test files share: the process environment (from clutune's one definition of it), torch on one thread
(the suite shares two cores), a local Ray, free ports, the digits dataset, and the tiny scenario with the
overrides that make a command on it take seconds.

The ``slow`` marker (pyproject.toml) sets apart what needs a cluster, a browser, a wheel, a kill and resume, a pip
install or a sweep of more than a few trials; ``make test-fast`` runs the rest (docs/testing.md).
"""

from __future__ import annotations

import socket
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import pytest
import torch
import yaml

from clutune.data import load_dataset
from clutune.platform.run.runtime import RAY_ENV, set_defaults

# Unconditionally local: even with a ``ray start`` head of someone else's on this machine, the suite's own Ray and
# the commands it starts stay on loopback (set_ray_env would join that head).
set_defaults(RAY_ENV)
torch.set_num_threads(1)

# The tiny scenario: digits, an MLP of 32, two learns, a class unlearn and a third learn.
TINY_REQUESTS = [{"learn": {"task": 0}}, {"learn": {"task": 1}}, {"unlearn": {"classes": [1]}}, {"learn": {"task": 2}}]
# A method's run on it in seconds: one epoch per learn, ten steps per unlearn, a small buffer.
FAST = {"epochs_per_learn": 1, "iters_per_unlearn": 10, "buffer_size": 50}


@pytest.fixture(scope="session")
def local_ray():
    import ray

    ray.init(num_cpus=2, include_dashboard=False, log_to_driver=False)
    yield ray
    ray.shutdown()


def _unused_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


@pytest.fixture(scope="session")
def free_port() -> Callable[[], int]:
    """A port nobody listens on now, on loopback: a server a test starts never meets another test's."""
    return _unused_port


@pytest.fixture(scope="module")
def digits():
    return load_dataset("digits")


@pytest.fixture(scope="session")
def tiny_scenario() -> Callable[..., Path]:
    """Writes ``<folder>/<file>.yaml`` (the config's name, unless given); ``oracle`` and ``sweep`` are the
    sections as given, ``requests`` replaces the stream and ``extra_requests`` follow it, ``hidden`` is the MLP's
    width."""

    def write(
        folder: Path,
        name: str,
        *,
        oracle: dict[str, Any],
        sweep: dict[str, Any] | None = None,
        requests: Sequence[dict[str, Any]] = TINY_REQUESTS,
        extra_requests: Sequence[dict[str, Any]] = (),
        hidden: int = 32,
        file: str | None = None,
    ) -> Path:
        config: dict[str, Any] = {
            "name": name,
            "dataset": {"name": "digits"},
            "model": {"name": "mlp", "hidden": [hidden]},
        }
        config["oracle"] = oracle
        if sweep is not None:
            config["sweep"] = sweep
        config["scenario"] = {"requests": [*requests, *extra_requests]}
        path = Path(folder) / f"{file or name}.yaml"
        path.write_text(yaml.safe_dump(config, sort_keys=False))
        return path

    return write


@pytest.fixture(scope="session")
def fast_sets() -> list[str]:
    """FAST as the command line's ``--set`` arguments."""
    return [arg for key, value in FAST.items() for arg in ("--set", f"{key}={value}")]
