"""``clutune oracles``: train a scenario's oracles ahead of a grid, prune the cache, or report its size.

Training goes through the set-up path every grid command takes (:mod:`clutune.platform.run.launch`): the same
checks before any side effect, the same oracle-cache lease (a concurrent ``--prune`` keeps away from the keys
being trained), and Ray started only when an oracle is missing, shut down again when the command ends.
"""

from __future__ import annotations

import contextlib
import re
import tempfile
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path

from clutune.core import storage
from clutune.core.config import Config, OracleConfig
from clutune.core.oracle import OracleCache
from clutune.errors import UserError
from clutune.platform.run.log import Log, libraries_logged, print_line

_SIZE_UNITS = {"": 1, "K": 1 << 10, "M": 1 << 20, "G": 1 << 30, "T": 1 << 40}


@dataclass(frozen=True)
class PruneLimits:
    """What ``--prune`` removes: entries unused for over ``max_age_s``, then the oldest while over ``max_bytes``."""

    max_age_s: float | None = None
    max_bytes: int | None = None


@dataclass
class OracleCacheState:
    """What ``clutune.oracles`` returns: the cache after the call, and what the call changed in it."""

    root: str
    oracles: int  # complete entries now in the cache
    bytes: int
    trained: list[str] = field(default_factory=list)  # keys this call trained
    removed: list[str] = field(default_factory=list)  # keys this call pruned
    kept: list[str] = field(default_factory=list)  # keys a prune limit selected but a lease protected

    @property
    def size(self) -> str:
        """The cache's size as the command prints it (``3.1M``)."""
        return format_bytes(self.bytes)


def parse_size(text: str | int) -> int:
    """``500M``, ``2G``, ``1.5G``, ``800K`` or plain bytes; units are powers of 1024, a trailing B is allowed."""
    if isinstance(text, int) and not isinstance(text, bool) and text >= 0:
        return text
    match = re.fullmatch(r"\s*(\d+(?:\.\d+)?)\s*([KMGT]?)B?\s*", text, re.IGNORECASE) if isinstance(text, str) else None
    if match is None:
        raise UserError(f"--max-size {text!r}: expected a size like 500M, 2G or 1048576")
    return int(float(match[1]) * _SIZE_UNITS[match[2].upper()])


def format_bytes(n: int) -> str:
    for unit in ("T", "G", "M", "K"):
        if n >= _SIZE_UNITS[unit]:
            return f"{n / _SIZE_UNITS[unit]:.1f}{unit}"
    return f"{n}B"


def oracle_options(
    config: bool, sets: bool, cache_dir: bool, prune: bool, max_age: float | None, max_size: str | int | None
) -> PruneLimits | None:
    """Every combination checked before any work (``config``, ``sets``, ``cache_dir``: whether each was given);
    returns the prune limits in seconds and bytes (``max_age`` is in days), None when not pruning."""
    limited = max_age is not None or max_size is not None
    if limited and not prune:
        raise UserError("--max-age and --max-size only apply with --prune")
    if prune and not limited:
        raise UserError("--prune needs a limit: --max-age DAYS and/or --max-size SIZE (e.g. 500M, 2G)")
    if not (config or prune or cache_dir):
        raise UserError("oracles: give --config to train, --prune to prune, or --cache-dir to report a cache's size")
    if sets and not config:
        raise UserError("--set needs --config")
    if max_age is not None and (isinstance(max_age, bool) or not isinstance(max_age, (int, float))):
        raise UserError(f"--max-age {max_age!r}: expected a number of days")
    if max_age is not None and max_age < 0:
        raise UserError(f"--max-age {max_age:g}: must be at least 0 days")
    if not prune:
        return None
    max_age_s = None if max_age is None else max_age * 86400.0
    return PruneLimits(max_age_s, None if max_size is None else parse_size(max_size))


def prune_oracles(cache: OracleCache, limits: PruneLimits, log: Log = print_line) -> tuple[list[str], list[str]]:
    """Least recently used first; a leased entry is kept. Returns (removed, kept) keys."""
    entries = {e.key: e for e in cache.entries()}
    plan = cache.prune_plan(limits.max_age_s, limits.max_bytes, set())
    removed = cache.remove(plan.remove)
    for key in removed:
        used = time.strftime("%Y-%m-%d %H:%M", time.localtime(entries[key].last_used))
        log(f"removed {key} ({format_bytes(entries[key].bytes)}, last used {used})")
    for key in plan.spared:
        log(f"kept {key} ({format_bytes(entries[key].bytes)}): a running job holds a lease on it")
    if not plan.remove and not plan.spared:
        log("nothing to prune: the cache is within the limits")
    return removed, list(plan.spared)


def train_oracles(config: Config, address: str | None, num_cpus: int | None, log: Log = print_line) -> list[str]:
    """Only the oracles ``oracle.policy`` needs; the missing ones train in parallel on Ray. Returns their keys."""
    import ray

    from clutune.platform.cluster.oracle_pool import leased_plan, submit_oracles
    from clutune.platform.run.launch import Cluster, local_ray, prepare_command

    cluster = Cluster(address, num_cpus)
    prep = prepare_command(config, cluster)
    with leased_plan(prep) as plan:
        needed = sum(key is not None for key in plan.key_of_request)
        policy = "" if needed == len(prep.scenario) else f" (oracle.policy {config.oracle.policy}: {needed} get one)"
        log(
            f"{len(plan.owned)} distinct oracles for {len(prep.scenario)} requests{policy}; "
            f"{len(plan.cached)} already cached"
        )
        if not plan.missing:
            return []
        with _library_log_folder(prep.cache.root) as folder, libraries_logged(folder, log), local_ray(cluster):
            refs = submit_oracles(prep, plan)
            pending = {refs[k]: k for k in plan.missing}
            while pending:
                ready, _ = ray.wait(list(pending), num_returns=1)
                outputs = ray.get(ready[0])
                key = pending.pop(ready[0])
                done = len(plan.missing) - len(pending)
                cost = f"{outputs.seconds:.1f} s, {outputs.samples_processed} samples"
                log(f"[{done}/{len(plan.missing)}] oracle {key}: {cost}")
    return plan.missing


@contextlib.contextmanager
def _library_log_folder(cache_root: str) -> Iterator[Path]:
    """Where Ray's lines go while oracles train (``libraries.log``): the cache folder, which is the command's only
    folder; for a remote cache a temporary one, kept for the call (the lines' warnings still reach ``log``)."""
    if not storage.is_remote(cache_root):
        yield Path(cache_root)
        return
    with tempfile.TemporaryDirectory(prefix="clutune-oracles-") as scratch:
        yield Path(scratch)


def run_oracles(
    config: Config | None,
    cache_dir: str | None,
    limits: PruneLimits | None,
    address: str | None = None,
    num_cpus: int | None = None,
    log: Log = print_line,
) -> OracleCacheState:
    """``clutune oracles``: prune (``limits``), else train (``config``), then describe the cache. ``cache_dir``
    replaces the config's ``oracle.cache_dir``; without a config it names the cache (default: the usual one)."""
    if config is not None and cache_dir:
        config.oracle.cache_dir = cache_dir
    cache = OracleCache(config.oracle.cache_dir if config else cache_dir or OracleConfig().cache_dir)
    trained: list[str] = []
    removed: list[str] = []
    kept: list[str] = []
    if limits is not None:
        removed, kept = prune_oracles(cache, limits, log)
    elif config is not None:
        trained = train_oracles(config, address, num_cpus, log)
    entries = cache.entries()
    return OracleCacheState(cache.root, len(entries), sum(e.bytes for e in entries), trained, removed, kept)


__all__ = [
    "OracleCacheState",
    "PruneLimits",
    "format_bytes",
    "parse_size",
    "oracle_options",
    "prune_oracles",
    "run_oracles",
    "train_oracles",
]
