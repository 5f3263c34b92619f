"""A method against the oracle members of a request, and the members against each other: the noise floor.

Every KL here is ``kl_per_sample``'s, KL(reference ‖ model), averaged over the samples ``kl_oracle_all``
averages (the remain, learn, unlearn and test splits together), so each column reads on the scale of
``kl_oracle_all``, which stays the KL to member 0.
"""

from __future__ import annotations

import math

import numpy as np

from clutune.core.metrics import kl_per_sample

ENSEMBLE_COLUMNS = ("kl_oracle_ens", "oracle_floor", "oracle_floor_lo", "oracle_floor_hi", "kl_over_floor")


def pairwise_kl(p_members: np.ndarray) -> np.ndarray:
    """Mean KL(member i ‖ member j) over the samples, for every ordered pair i ≠ j (both directions: KL is not
    symmetric), in the order (0, 1), (0, 2), ..., (1, 0), ..."""
    m = len(p_members)
    return np.array([kl_per_sample(p_members[i], p_members[j]).mean() for i in range(m) for j in range(m) if i != j])


def ensemble_metrics(p_model: np.ndarray, p_members: np.ndarray) -> dict[str, float]:
    """``p_model`` (n, C) and ``p_members`` (M, n, C), M ≥ 2: softmax outputs on the same n samples.

    - ``kl_oracle_ens``: KL to the members' mean prediction;
    - ``oracle_floor``: the mean KL between two members, over the ordered pairs: how far one exact retrain lies
      from another, the noise floor of this request;
    - ``oracle_floor_lo`` / ``oracle_floor_hi``: the 2.5th and 97.5th percentiles of the pairwise KLs (linear
      interpolation), the range that holds 95% of the pairs;
    - ``kl_over_floor``: the method's mean KL to a member, over the floor (1: as far from the members as they
      are from each other; NaN when the floor is 0).
    """
    pairs = pairwise_kl(p_members)
    floor = float(pairs.mean())
    to_members = float(np.mean([kl_per_sample(p, p_model).mean() for p in p_members]))
    lo, hi = np.percentile(pairs, [2.5, 97.5])
    return {
        "kl_oracle_ens": float(kl_per_sample(p_members.mean(axis=0), p_model).mean()),
        "oracle_floor": floor,
        "oracle_floor_lo": float(lo),
        "oracle_floor_hi": float(hi),
        "kl_over_floor": to_members / floor if floor > 0 else math.nan,
    }


def no_ensemble_metrics() -> dict[str, float]:
    """A request the oracle policy gives no oracle, in a run with an ensemble: every column NaN."""
    return dict.fromkeys(ENSEMBLE_COLUMNS, math.nan)
