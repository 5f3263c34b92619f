"""Every metric of the spec's Part A, as plain functions over per-split softmax outputs.

They take arrays, not models, so the same code scores a live run and recomputes a run from its saved
predictions (``--save-predictions``).
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from sklearn.linear_model import LogisticRegression
from sklearn.svm import SVC

SPLITS = ("remain", "learn", "unlearn", "test")
PROB_FLOOR = 1e-12
SVC_MAX_SAMPLES = 1000  # members and non-members each, for the SalUn-direction MIA's SVC
SVC_MAX_TARGETS = 2000  # forgotten samples the SVC classifies: a fixed sample of them past this many
NAN = float("nan")


@dataclass
class Split:
    """One evaluation split: sample ids, labels and both models' float64 softmax outputs."""

    ids: np.ndarray
    labels: np.ndarray
    p_model: np.ndarray
    p_oracle: np.ndarray

    def __len__(self) -> int:
        return len(self.ids)


def softmax64(logits: np.ndarray) -> np.ndarray:
    z = np.asarray(logits, dtype=np.float64)
    z = z - z.max(axis=1, keepdims=True)
    e = np.exp(z)
    return e / e.sum(axis=1, keepdims=True)


def kl_per_sample(p_oracle: np.ndarray, p_model: np.ndarray) -> np.ndarray:
    """KL(p_oracle || p_model) per row, probabilities clamped to >= 1e-12."""
    po = np.clip(np.asarray(p_oracle, dtype=np.float64), PROB_FLOOR, None)
    pm = np.clip(np.asarray(p_model, dtype=np.float64), PROB_FLOOR, None)
    return (po * (np.log(po) - np.log(pm))).sum(axis=1)


def accuracy(p: np.ndarray, labels: np.ndarray) -> float:
    return float((p.argmax(axis=1) == labels).mean()) if len(labels) else NAN


def entropy(p: np.ndarray) -> np.ndarray:
    q = np.clip(p, PROB_FLOOR, None)
    return -(q * np.log(q)).sum(axis=1)


def true_class_prob(p: np.ndarray, labels: np.ndarray) -> np.ndarray:
    return p[np.arange(len(labels)), labels]


def mia_member_rate(member_feat: np.ndarray, nonmember_feat: np.ndarray, target_feat: np.ndarray) -> float:
    """SFR-on direction: share of targets a balanced logistic regression calls member (lower = forgotten)."""
    if len(target_feat) == 0:
        return NAN
    x = np.concatenate([member_feat, nonmember_feat]).reshape(-1, 1)
    y = np.concatenate([np.ones(len(member_feat)), np.zeros(len(nonmember_feat))])
    clf = LogisticRegression(class_weight="balanced").fit(x, y)
    return float(clf.predict(np.asarray(target_feat).reshape(-1, 1)).mean())


def mia_efficacy(member_feat: np.ndarray, nonmember_feat: np.ndarray, target_feat: np.ndarray) -> float:
    """SalUn direction: 1 - share of targets an RBF SVC calls member (higher = forgotten)."""
    if len(target_feat) == 0:
        return NAN
    x = np.concatenate([member_feat, nonmember_feat]).reshape(-1, 1)
    y = np.concatenate([np.ones(len(member_feat)), np.zeros(len(nonmember_feat))])
    clf = SVC(C=3, gamma="auto", kernel="rbf").fit(x, y)
    return float(1.0 - clf.predict(np.asarray(target_feat).reshape(-1, 1)).mean())


def forgetting(task_histories: list[list[float]]) -> float:
    """Mean over tasks of (best accuracy at an earlier request - accuracy now); 0 when no task qualifies.

    Each history runs from the request that learned the task to now, measured on the same class set.
    """
    drops = [max(h[:-1]) - h[-1] for h in task_histories if len(h) >= 2]
    return float(np.mean(drops)) if drops else 0.0


def _mia_pair(splits: dict[str, Split], which: str) -> tuple[float, float]:
    """(member rate, efficacy) of the model (``which`` = p_model) or of the oracle (p_oracle)."""
    owned = [splits["remain"], splits["learn"]]
    owned_ids = np.concatenate([s.ids for s in owned])
    owned_p = np.concatenate([getattr(s, which) for s in owned])
    owned_y = np.concatenate([s.labels for s in owned])
    test, unl = splits["test"], splits["unlearn"]
    if len(unl) == 0 or len(owned_ids) == 0:
        return NAN, NAN
    p_test, p_unl = getattr(test, which), getattr(unl, which)
    rate = mia_member_rate(entropy(owned_p), entropy(p_test), entropy(p_unl))
    # The SVC costs O(n^2): members and non-members are capped at SVC_MAX_SAMPLES each (the lowest ids, a fixed
    # choice), so a large test set or a long stream does not make every evaluation take seconds.
    n = min(len(test), SVC_MAX_SAMPLES)
    first = np.argsort(owned_ids, kind="stable")[:n]
    targets = svc_targets(unl.ids)
    eff = mia_efficacy(
        true_class_prob(owned_p[first], owned_y[first]),
        true_class_prob(p_test[:n], test.labels[:n]),
        true_class_prob(p_unl[targets], unl.labels[targets]),
    )
    return rate, eff


def svc_targets(ids: np.ndarray) -> np.ndarray:
    """Positions of the forgotten samples the SVC classifies: all of them up to ``SVC_MAX_TARGETS``, else the
    ``SVC_MAX_TARGETS`` whose ids hash lowest.

    The forgotten split is every sample unlearned so far, so on a long stream it grows with every unlearn
    request, and the SVC's prediction costs its support vectors times the targets: a 1,000-request study spent
    four times as long evaluating its last requests as its first. A hash of the id (Knuth's multiplicative
    one) draws a sample that is spread over the whole stream, the same in every run, and stable as the split
    grows: a sample once chosen stays chosen until one with a lower hash is unlearned. The share it estimates
    has a standard error of at most 0.011."""
    if len(ids) <= SVC_MAX_TARGETS:
        return np.arange(len(ids))
    keys = (np.asarray(ids, dtype=np.uint64) * np.uint64(2654435761)) % np.uint64(1 << 32)
    return np.sort(np.argsort(keys, kind="stable")[:SVC_MAX_TARGETS])


def request_metrics(splits: dict[str, Split], is_learn: bool, with_oracle: bool = True) -> dict[str, float]:
    """All per-request metrics that depend only on this request's splits (forgetting is added by the caller).

    Without an oracle (a request the oracle policy skips) every metric that needs one is NaN; the model's own
    accuracies and MIA are still measured.
    """
    out: dict[str, float] = {}
    kls = []
    for name in SPLITS:
        s = splits[name]
        out[f"acc_{name}"] = accuracy(s.p_model, s.labels)
        out[f"oracle_acc_{name}"] = accuracy(s.p_oracle, s.labels) if with_oracle else NAN
        out[f"gap_{name}"] = abs(out[f"acc_{name}"] - out[f"oracle_acc_{name}"]) if len(s) else NAN
        kl = kl_per_sample(s.p_oracle, s.p_model) if with_oracle else np.full(len(s), NAN)
        out[f"kl_oracle_{name}"] = float(kl.mean()) if len(s) else NAN
        kls.append(kl)
    out["kl_oracle_all"] = float(np.concatenate(kls).mean())
    out["mia_member_rate"], out["mia_efficacy"] = _mia_pair(splits, "p_model")
    oracle_mia = _mia_pair(splits, "p_oracle") if with_oracle else (NAN, NAN)
    out["oracle_mia_member_rate"], out["oracle_mia_efficacy"] = oracle_mia
    gaps = [out["gap_remain"], out["gap_test"]]
    if is_learn:
        gaps.append(out["gap_learn"])
    if len(splits["unlearn"]):
        gaps.append(out["gap_unlearn"])
        gaps.append(abs(out["mia_member_rate"] - out["oracle_mia_member_rate"]))
    gaps = [g for g in gaps if not math.isnan(g)]
    out["avg_gap"] = float(np.mean(gaps)) if gaps else NAN
    return out


def test_accuracy_by_classes(p: np.ndarray, labels: np.ndarray, classes: list[int]) -> float:
    mask = np.isin(labels, classes)
    return accuracy(p[mask], labels[mask]) if mask.any() else NAN
