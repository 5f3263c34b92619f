"""The reservoir buffer: bounded, uniform, seeded, purgeable, with the logits slot in step with the ids."""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch
from hypothesis import given, settings
from hypothesis import strategies as st

from clutune.clu.buffer import ReservoirBuffer


def ids(start: int, stop: int) -> torch.Tensor:
    return torch.arange(start, stop, dtype=torch.int64)


def rows_for(i: torch.Tensor) -> torch.Tensor:
    """A logits row that names its id, so alignment can be read back: [id, 2*id + 1, -id]."""
    f = i.float()
    return torch.stack([f, 2 * f + 1, -f], dim=1)


def assert_aligned(buf: ReservoirBuffer) -> None:
    assert buf.logits is not None
    assert buf.logits.shape == (len(buf), 3)
    assert torch.equal(buf.logits, rows_for(buf.ids))


# ------------------------------------------------------------------ capacity


def test_fills_to_capacity_in_offer_order():
    buf = ReservoirBuffer(50, seed=0)
    buf.add(ids(0, 30))
    assert len(buf) == 30
    assert buf.ids.tolist() == list(range(30))
    buf.add(ids(30, 50))
    assert buf.ids.tolist() == list(range(50))
    assert buf.seen == 50


@pytest.mark.parametrize("chunks", [[1000], [10, 990], [49, 1, 1, 949], [7] * 143])
def test_never_exceeds_capacity(chunks):
    buf = ReservoirBuffer(50, seed=3)
    start = 0
    for n in chunks:
        buf.add(ids(start, start + n))
        start += n
        assert len(buf) == min(50, start)
        assert len(torch.unique(buf.ids)) == len(buf)  # each offered id at most once
        assert bool(((buf.ids >= 0) & (buf.ids < start)).all())
    assert buf.seen == start


def test_zero_capacity_stays_empty():
    buf = ReservoirBuffer(0, seed=0)
    buf.add(ids(0, 100))
    assert len(buf) == 0
    assert buf.seen == 100


def test_negative_capacity_refused():
    with pytest.raises(ValueError):
        ReservoirBuffer(-1)


# ------------------------------------------------------------------ seeding and uniformity


def test_same_seed_same_contents():
    a, b = ReservoirBuffer(100, seed=7), ReservoirBuffer(100, seed=7)
    for lo, hi in [(0, 500), (500, 2000)]:
        a.add(ids(lo, hi))
        b.add(ids(lo, hi))
    assert torch.equal(a.ids, b.ids)


def test_different_seed_different_contents():
    a, b = ReservoirBuffer(100, seed=7), ReservoirBuffer(100, seed=8)
    a.add(ids(0, 2000))
    b.add(ids(0, 2000))
    assert not torch.equal(a.ids, b.ids)
    assert set(a.ids.tolist()) != set(b.ids.tolist())


def test_inclusion_is_approximately_uniform():
    """Offer 0..9999 into capacity 100 with many seeds: every id should be kept with probability 1%."""
    n, cap, runs = 10_000, 100, 60
    counts = np.zeros(n)
    for seed in range(runs):
        buf = ReservoirBuffer(cap, seed=seed)
        buf.add(ids(0, n))
        assert len(buf) == cap
        counts[buf.ids.numpy()] += 1
    freq = counts / runs
    assert freq.mean() == pytest.approx(cap / n)  # exactly, since every run keeps exactly cap ids

    # Position bias (the classic reservoir bug: early or late ids over-kept): 10 blocks of 1000 ids each get
    # 10% of all slots. Each block's count is close to binomial(runs*cap, 0.1): sd ~ 23; allow 6 sd.
    block = counts.reshape(10, -1).sum(axis=1)
    expected = runs * cap / 10
    sd = math.sqrt(runs * cap * 0.1 * 0.9)
    assert np.all(np.abs(block - expected) < 6 * sd), block
    # The first 100 ids (all kept during the fill phase) and the last 100 are not favoured either.
    for part in (counts[:100], counts[-100:]):
        assert abs(part.sum() - runs) < 6 * math.sqrt(runs), part.sum()  # about one kept per run

    # Per-id dispersion: each count is ~ Poisson(e), e = 0.6, so (c - e)^2 / e has mean 1 and variance 2 + 1/e;
    # the sum over the 10,000 ids is then about n +- sqrt(n (2 + 1/e)); allow 6 sd.
    e = runs * cap / n
    chi2 = ((counts - e) ** 2 / e).sum()
    assert abs(chi2 - n) < 6 * math.sqrt(n * (2 + 1 / e)), chi2
    # No id is wildly over-represented: P(Poisson(0.6) >= 10) ~ 1e-9 per id.
    assert counts.max() <= 9


# ------------------------------------------------------------------ purge and refill


def test_purge_removes_exactly_the_given_ids_and_counts_them():
    buf = ReservoirBuffer(100, seed=1)
    buf.add(ids(0, 1000))
    before = buf.ids.clone()
    asked = torch.tensor([int(before[0]), int(before[5]), int(before[50]), 5000, -3])  # 2 absent ids
    removed = buf.purge(asked)
    assert removed == 3
    assert len(buf) == 97
    assert not torch.isin(buf.ids, asked).any()
    keep = ~torch.isin(before, asked)
    assert torch.equal(buf.ids, before[keep])  # the rest untouched, order kept
    assert buf.purge(asked) == 0
    assert buf.purge(torch.empty(0, dtype=torch.int64)) == 0
    assert len(buf) == 97


def test_after_purge_later_adds_refill_freed_slots_first():
    buf = ReservoirBuffer(10, seed=2)
    buf.add(ids(0, 100))
    drop = buf.ids[:4].clone()
    assert buf.purge(drop) == 4
    seen = buf.seen
    buf.add(ids(1000, 1004))
    assert len(buf) == 10
    assert set(range(1000, 1004)) <= set(buf.ids.tolist())  # freed slots filled by the next ids offered
    assert buf.seen == seen + 4
    buf.add(ids(2000, 3000))
    assert len(buf) == 10
    assert not torch.isin(buf.ids, drop).any()


def test_purge_everything_then_refill():
    buf = ReservoirBuffer(20, seed=0)
    buf.add(ids(0, 200))
    assert buf.purge(ids(0, 200)) == 20
    assert len(buf) == 0
    buf.add(ids(500, 530))
    assert len(buf) == 20
    assert len(set(buf.ids.tolist())) == 20
    assert bool(((buf.ids >= 500) & (buf.ids < 530)).all())


# ------------------------------------------------------------------ the logits slot


def test_logits_stay_aligned_through_add_replace_purge():
    buf = ReservoirBuffer(25, seed=4, logits_dim=3)
    a = ids(0, 10)
    buf.add(a, rows_for(a))  # fill phase only
    assert_aligned(buf)
    b = ids(10, 300)
    buf.add(b, rows_for(b))  # rest of fill + replacements of slots filled in this same call and earlier
    assert_aligned(buf)
    assert len(buf) == 25
    buf.purge(buf.ids[::3].clone())
    assert_aligned(buf)
    c = ids(300, 800)
    buf.add(c, rows_for(c))  # refill freed slots, then replace older and just-added entries
    assert_aligned(buf)
    assert len(buf) == 25
    assert bool((buf.ids >= 300).any())  # replacements did happen


def test_logits_required_when_the_buffer_stores_them():
    buf = ReservoirBuffer(5, seed=0, logits_dim=3)
    with pytest.raises(ValueError):
        buf.add(ids(0, 3))
    assert len(buf) == 0


def test_same_seed_with_logits_matches_ids_only_sampling():
    """Keeping logits must not change which ids are kept."""
    a, b = ReservoirBuffer(30, seed=9), ReservoirBuffer(30, seed=9, logits_dim=3)
    x = ids(0, 700)
    a.add(x)
    b.add(x, rows_for(x))
    assert torch.equal(a.ids, b.ids)
    assert_aligned(b)


# ------------------------------------------------------------------ checkpointing


def test_state_dict_round_trip_continues_identically():
    a = ReservoirBuffer(40, seed=5, logits_dim=3)
    x = ids(0, 300)
    a.add(x, rows_for(x))
    a.purge(ids(0, 150))
    state = a.state_dict()

    b = ReservoirBuffer(1, seed=123, logits_dim=3)  # different capacity and seed: all overwritten by the state
    b.load_state_dict(state)
    assert b.capacity == 40
    assert b.seen == a.seen
    assert torch.equal(b.ids, a.ids)
    assert torch.equal(b.logits, a.logits)

    for lo, hi in [(300, 700), (700, 1500)]:
        y = ids(lo, hi)
        a.add(y, rows_for(y))
        b.add(y, rows_for(y))
        assert torch.equal(a.ids, b.ids)
        assert torch.equal(a.logits, b.logits)
        assert a.seen == b.seen
    assert_aligned(b)


def test_state_dict_is_a_snapshot():
    a = ReservoirBuffer(10, seed=0)
    a.add(ids(0, 50))
    state = a.state_dict()
    saved = state["ids"].clone()
    a.purge(a.ids[:5].clone())
    a.add(ids(50, 500))
    assert torch.equal(state["ids"], saved)
    b = ReservoirBuffer(10, seed=0)
    b.load_state_dict(state)
    b.ids[0] = -1
    assert torch.equal(state["ids"], saved)


# ------------------------------------------------------------------ property test


ops = st.lists(
    st.one_of(
        st.tuples(st.just("add"), st.integers(min_value=0, max_value=60)),
        st.tuples(st.just("purge"), st.lists(st.integers(min_value=0, max_value=400), max_size=40)),
    ),
    max_size=12,
)


@settings(max_examples=60, deadline=None, database=None)
@given(capacity=st.integers(min_value=0, max_value=20), seed=st.integers(0, 2**31 - 1), steps=ops)
def test_property_bounded_and_no_unlearned_id_survives(capacity, seed, steps):
    buf = ReservoirBuffer(capacity, seed=seed, logits_dim=3)
    next_id = 0
    offered: set[int] = set()
    unlearned: set[int] = set()
    for op, arg in steps:
        if op == "add":
            # ids are learned once and never again after unlearning, as build_scenario enforces
            new = ids(next_id, next_id + arg)
            next_id += arg
            size = len(buf)
            buf.add(new, rows_for(new))
            offered |= set(new.tolist())
            assert len(buf) == min(capacity, size + arg)
        else:
            drop = [i for i in arg if i < next_id]  # only ids learned before can be unlearned
            present = set(buf.ids.tolist()) & set(drop)
            assert buf.purge(torch.tensor(drop, dtype=torch.int64)) == len(present)
            unlearned |= set(drop)
        content = buf.ids.tolist()
        assert len(content) <= capacity
        assert len(set(content)) == len(content)
        assert not set(content) & unlearned
        assert set(content) <= offered
        assert_aligned(buf)
