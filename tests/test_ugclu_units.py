"""Unit checks of UG-CLU's pieces against hand computations (spec Part A; Part B §2-§4).

Everything here is real torch on tiny problems whose answer is known in closed form: the diagonal Fisher and
the balanced mask, the per-sample weights, the cosine decay, the fast-slow update (a plain SGD step in its
degenerate setting; the (I - beta_R H)^K damping on a quadratic), the ablation switches, and the buffer's
privacy invariant through a whole digits run.
"""

from __future__ import annotations

import math
from types import SimpleNamespace

import pytest
import torch
import torch.nn.functional as F
from torch import nn

from clutune.clu.access import TrainAccess
from clutune.clu.coefficients import cosine_decay, sample_weights
from clutune.clu.fastslow import fast_slow_iteration
from clutune.clu.methods.ugclu import UGCLU, UGCLUHparams
from clutune.clu.saliency import balanced_mask, fisher_diagonal
from clutune.core.config import CONFIG_DIR, load_config
from clutune.core.experiment import method_hparams, prepare, run_experiment

torch.set_num_threads(1)


def cos(u: torch.Tensor, v: torch.Tensor) -> float:
    return float(u @ v / (u.norm() * v.norm()))


# ---------------------------------------------------------------------------------------------------------
# 1. Diagonal Fisher and the balanced mask


def _fisher_by_hand(w: torch.Tensor, x: torch.Tensor, y: torch.Tensor, batches: list[list[int]]) -> torch.Tensor:
    """Closed form for a bias-free linear softmax model: d mean-CE / dW = mean_i (softmax(W x_i) - e_{y_i}) x_i^T.

    Squared per batch (the batch-mean gradient, not per-sample), then averaged over the batches.
    """
    total = torch.zeros_like(w)
    for b in batches:
        xb, yb = x[b], y[b]
        resid = torch.softmax(xb @ w.T, dim=1) - F.one_hot(yb, w.shape[0]).to(w.dtype)
        total += (resid.T @ xb / len(b)) ** 2
    return total / len(batches)


def _fisher_by_autograd(model: nn.Module, x: torch.Tensor, y: torch.Tensor, batches: list[list[int]]) -> torch.Tensor:
    total = torch.zeros_like(model.weight)
    for b in batches:
        (g,) = torch.autograd.grad(F.cross_entropy(model(x[b]), y[b]), [model.weight])
        total += g**2
    return total / len(batches)


def test_fisher_diagonal_matches_hand_computation_and_mask_pattern() -> None:
    # Linear(3 -> 2) at W = 0: softmax is (1/2, 1/2) and every gradient entry is an exact binary fraction.
    # Task data lives on input 0, the remaining data on inputs 0 and 1, input 2 is always 0.
    model = nn.Linear(3, 2, bias=False)
    with torch.no_grad():
        model.weight.zero_()
    x = torch.tensor(
        [
            [2.0, 0.0, 0.0],  # 0 task
            [4.0, 0.0, 0.0],  # 1 task
            [2.0, 0.0, 0.0],  # 2 task
            [1.0, 2.0, 0.0],  # 3 remaining
            [1.0, 0.0, 0.0],  # 4 remaining
        ]
    )
    y = torch.tensor([0, 1, 0, 0, 1])
    fetch = lambda ids: (x[ids], y[ids])  # noqa: E731
    task_batches = [torch.tensor([0, 1]), torch.tensor([2])]
    rem_batches = [torch.tensor([3]), torch.tensor([4])]

    f_task = fisher_diagonal(model, task_batches, fetch)
    f_rem = fisher_diagonal(model, rem_batches, fetch)
    # By hand: task batch {0,1}: mean grad of row 0 = ((-1/2)*2 + (1/2)*4)/2 = 1/2 -> 1/4; batch {2}: -1 -> 1.
    # F_task column 0 = (1/4 + 1)/2 = 5/8, other columns 0 (rows are equal up to sign with two classes).
    # Remaining {3}: row 0 = -1/2 * (1, 2, 0) -> (1/4, 1, 0); {4}: 1/2 * (1, 0, 0) -> (1/4, 0, 0).
    expected_task = torch.tensor([[0.625, 0.0, 0.0], [0.625, 0.0, 0.0]])
    expected_rem = torch.tensor([[0.25, 0.5, 0.0], [0.25, 0.5, 0.0]])
    assert torch.equal(f_task["weight"], expected_task), f_task
    assert torch.equal(f_rem["weight"], expected_rem), f_rem
    assert set(f_task) == {"weight"}

    # Ratios: column 0 = 2.5 exactly, column 1 ~ 2e-15, column 2 = 1e-15 / 1e-15 = 1 (both zero).
    cases = {
        0.5: [1.0, 0.0, 1.0],
        1.0: [1.0, 0.0, 1.0],  # both-zero column has ratio 1 -> kept at gamma 1
        1.5: [1.0, 0.0, 0.0],  # ... and dropped above 1
        2.5: [1.0, 0.0, 0.0],  # ratio == gamma -> kept
        # the next float32 above 2.5 (the mask compares in the Fisher's dtype, float32 here)
        float(torch.nextafter(torch.tensor(2.5), torch.tensor(3.0))): [0.0, 0.0, 0.0],
        1e9: [0.0, 0.0, 0.0],
    }
    for gamma, row in cases.items():
        mask = balanced_mask(f_task, f_rem, gamma)["weight"]
        assert torch.equal(mask, torch.tensor([row, row])), (gamma, mask)
        assert mask.dtype == f_task["weight"].dtype

    # A general point (random W, float64, multi-sample batches): the library equals both the closed form and
    # autograd computed batch by batch, and eval mode is restored to the caller's mode.
    torch.manual_seed(0)
    model64 = nn.Linear(3, 4, bias=False).double()
    x64 = torch.randn(9, 3, dtype=torch.float64)
    y64 = torch.randint(0, 4, (9,))
    batches = [[0, 1, 2, 3], [4, 5, 6], [7, 8]]
    model64.train()
    got = fisher_diagonal(model64, [torch.tensor(b) for b in batches], lambda ids: (x64[ids], y64[ids]))["weight"]
    assert model64.training
    hand = _fisher_by_hand(model64.weight.detach(), x64, y64, batches)
    auto = _fisher_by_autograd(model64, x64, y64, batches)
    assert torch.allclose(got, hand, rtol=1e-12, atol=1e-15)
    assert torch.allclose(got, auto, rtol=1e-12, atol=1e-15)
    # Not the mean of per-sample squares: that would be a different (larger) number.
    per_sample = _fisher_by_hand(model64.weight.detach(), x64, y64, [[i] for i in range(9)])
    assert not torch.allclose(got, per_sample, rtol=1e-3)


def test_balanced_mask_constructed_ratios() -> None:
    # float32 values where + 1e-15 is absorbed, so every ratio is exact: 2, 1, 0.5, 1 (0/0), ~1e-15 (0/x), 1e15.
    f_task = {"a": torch.tensor([1.0, 0.5, 0.25, 0.0, 0.0, 1.0])}
    f_rem = {"a": torch.tensor([0.5, 0.5, 0.5, 0.0, 1.0, 0.0])}
    expect = {
        1e-20: [1, 1, 1, 1, 1, 1],
        0.5: [1, 1, 1, 1, 0, 1],
        0.75: [1, 1, 0, 1, 0, 1],
        1.0: [1, 1, 0, 1, 0, 1],
        1.0001: [1, 0, 0, 0, 0, 1],
        2.0: [1, 0, 0, 0, 0, 1],
        2.0001: [0, 0, 0, 0, 0, 1],
        1e16: [0, 0, 0, 0, 0, 0],
    }
    for gamma, pattern in expect.items():
        got = balanced_mask(f_task, f_rem, gamma)["a"]
        assert torch.equal(got, torch.tensor(pattern, dtype=torch.float32)), (gamma, got)


# ---------------------------------------------------------------------------------------------------------
# 2. Per-sample weights and 3. cosine decay


def test_sample_weights_hand_formula_and_monotonicity() -> None:
    losses = torch.tensor([0.5, 1.0, 2.0, 4.0], dtype=torch.float64)
    b = len(losses)
    for lam in (0.5, 1.0, 2.0):
        un = sample_weights(losses, lam, "unlearn")
        le = sample_weights(losses, lam, "learn")
        hand_un = b * losses ** (-lam) / (losses ** (-lam)).sum()
        hand_le = b * losses**lam / (losses**lam).sum()
        assert torch.allclose(un, hand_un, rtol=1e-12), (lam, un, hand_un)
        assert torch.allclose(le, hand_le, rtol=1e-12), (lam, le, hand_le)
        assert math.isclose(float(un.sum()), b, rel_tol=1e-12)
        assert math.isclose(float(le.sum()), b, rel_tol=1e-12)
        assert (un[1:] < un[:-1]).all(), un  # unlearn: lower loss -> more ascent
        assert (le[1:] > le[:-1]).all(), le  # learn: higher loss -> more descent
        assert not un.requires_grad
    # A concrete value: lam = 1, unlearn: 1/l = (2, 1, 0.5, 0.25), sum 3.75 -> w = 4 * (2, 1, .5, .25) / 3.75.
    assert torch.allclose(
        sample_weights(losses, 1.0, "unlearn"), torch.tensor([8, 4, 2, 1], dtype=torch.float64) / 3.75
    )
    # lam = 0: uniform, both kinds, exactly ones.
    for kind in ("learn", "unlearn"):
        assert torch.equal(sample_weights(losses, 0.0, kind), torch.ones(b, dtype=torch.float64))
    # Gradients do not flow through the weights.
    leaf = losses.clone().requires_grad_(True)
    assert not sample_weights(leaf, 0.5, "unlearn").requires_grad


def test_cosine_decay() -> None:
    assert cosine_decay(25.0, 0, 200) == 25.0
    assert math.isclose(cosine_decay(25.0, 100, 200), 12.5, rel_tol=1e-12)
    assert abs(cosine_decay(25.0, 200, 200)) < 1e-12
    values = [cosine_decay(3.0, t, 50) for t in range(51)]
    assert all(a > b for a, b in zip(values, values[1:], strict=False))
    for t in (0, 7, 100, 200):
        assert cosine_decay(25.0, t, 200, decay=False) == 25.0


# ---------------------------------------------------------------------------------------------------------
# 4. Degenerate fast-slow update == one plain SGD step


def _request(ids: torch.Tensor, index: int, kind: str) -> SimpleNamespace:
    return SimpleNamespace(ids=ids, index=index, kind=kind)


@pytest.mark.parametrize("fast_lr", [None, 0.3])
def test_degenerate_ugclu_step_is_plain_sgd(fast_lr: float | None) -> None:
    torch.manual_seed(1)
    n, d, c = 12, 5, 3
    x = torch.randn(n, d, dtype=torch.float64)
    y = torch.randint(0, c, (n,))
    model = nn.Linear(d, c).double()
    wd, beta_r = 1e-2, 0.2
    hp = UGCLUHparams(
        lr=fast_lr,
        beta_R=beta_r,
        K_in=0,
        eta_out=1.0,
        lam=0.0,
        use_mask=False,
        batch_size=64,
        epochs_per_learn=1,
        iters_per_unlearn=1,
        alpha0_learn=1.0,
        alpha0_unlearn=1.0,
        clip=0.0,
        momentum=0.9,
        weight_decay=wd,
        buffer_size=100,
    )
    method = UGCLU(model, hp, TrainAccess(x, y, lambda t: t), seed=0)
    lr = beta_r if fast_lr is None else fast_lr

    def expected_after(ids: torch.Tensor, sign: float) -> list[torch.Tensor]:
        params = list(model.parameters())
        loss = F.cross_entropy(model(x[ids]), y[ids])
        grads = torch.autograd.grad(loss, params)
        return [(p - lr * (sign * g + wd * p)).detach() for p, g in zip(params, grads, strict=True)]

    learn_ids = torch.arange(n)
    want = expected_after(learn_ids, +1.0)
    method.learn(_request(learn_ids, 0, "learn"))
    for p, w in zip(model.parameters(), want, strict=True):
        assert torch.allclose(p, w, rtol=0, atol=1e-12), (p - w).abs().max()
    assert sorted(method.buffer.ids.tolist()) == learn_ids.tolist()

    # Unlearn with a non-empty buffer (K_in = 0 still means no slow steps): ascent, p + lr*grad - lr*wd*p.
    unlearn_ids = torch.tensor([1, 4, 7, 10])
    method.buffer.purge(unlearn_ids)
    want = expected_after(unlearn_ids, -1.0)
    method.unlearn(_request(unlearn_ids, 1, "unlearn"))
    for p, w in zip(model.parameters(), want, strict=True):
        assert torch.allclose(p, w, rtol=0, atol=1e-12), (p - w).abs().max()


# ---------------------------------------------------------------------------------------------------------
# 5. The fast-slow update on a quadratic with a known Hessian


def _quadratic(d: int = 10, h_max: float = 100.0, seed: int = 0):
    gen = torch.Generator().manual_seed(seed)
    q, _ = torch.linalg.qr(torch.randn(d, d, generator=gen, dtype=torch.float64))
    h = torch.linspace(1.0, h_max, d, dtype=torch.float64)
    hess = q @ torch.diag(h) @ q.T
    theta_star = torch.randn(d, generator=gen, dtype=torch.float64)
    g = q @ torch.ones(d, dtype=torch.float64)  # equal component (1) along every eigenvector
    return q, h, hess, theta_star, g


def _run_fast_slow(hess, theta_star, g, fast_lr: float, beta_r: float, k_in: int, eta_out: float = 1.0):
    theta = nn.Parameter(theta_star.clone())
    opt = torch.optim.SGD([theta], lr=0.0, momentum=0.0, weight_decay=0.0)

    def slow() -> torch.Tensor:
        r = theta - theta_star
        return 0.5 * r @ hess @ r

    fast_slow_iteration(
        [theta], opt, lambda: g @ theta, [slow] * k_in, fast_lr=fast_lr, slow_lr=beta_r, eta_out=eta_out
    )
    return theta.detach() - theta_star


def test_fast_slow_damps_high_curvature_exactly() -> None:
    q, h, hess, theta_star, g = _quadratic()
    fast_lr, beta_r, k_in = 0.1, 0.005, 5  # beta_R * h_max = 0.5 < 1: every factor in (0, 1)
    delta = _run_fast_slow(hess, theta_star, g, fast_lr, beta_r, k_in)
    fast = -fast_lr * g
    shrink = (q.T @ delta) / (q.T @ fast)  # per eigendirection
    expected = (1.0 - beta_r * h) ** k_in
    assert torch.allclose(shrink, expected, rtol=0, atol=1e-5), (shrink, expected)
    assert (shrink[1:] < shrink[:-1]).all(), shrink  # monotone decreasing in h_i
    assert float(shrink[-1] / shrink[0]) < 0.05, shrink  # h=100 damped far more than h=1
    # No slow steps: the displacement is the fast one, untouched.
    assert torch.allclose(_run_fast_slow(hess, theta_star, g, fast_lr, beta_r, 0), fast, atol=1e-14)


def test_fast_slow_points_along_preconditioned_gradient() -> None:
    # (I - beta H)^K ~ (I + K beta H)^-1 is a first-order match in beta H (both 1 - K beta h + O((beta h)^2))
    # and both decay monotonically in h; it is meant for the small-step regime beta_R h_max << 1. Here
    # beta_R h_max = 0.1 and K beta_R h_max = 1, so the damping is strong enough to matter (factors from 0.99
    # down to ~0.35) while each slow step stays small; mu = 1 / (K beta_R) is the implied damping of the Newton
    # step. The spectrum is spread 1..100, so -g and the preconditioned direction differ visibly.
    q, h, hess, theta_star, g = _quadratic()
    fast_lr, beta_r, k_in = 0.1, 1e-3, 10
    mu = 1.0 / (k_in * beta_r)
    delta = _run_fast_slow(hess, theta_star, g, fast_lr, beta_r, k_in)
    newton = -torch.linalg.solve(hess + mu * torch.eye(len(h), dtype=torch.float64), g)
    c_newton, c_plain = cos(delta, newton), cos(delta, -g)
    msg = f"cos(delta, -(H+muI)^-1 g) = {c_newton:.4f}, cos(delta, -g) = {c_plain:.4f}"
    print(msg)
    assert c_newton > 0.9, msg
    assert c_newton > c_plain, msg
    assert c_newton > 0.99, msg  # measured 0.9951 vs 0.9504 for these numbers


def test_eta_out_scales_displacement() -> None:
    _, _, hess, theta_star, g = _quadratic()
    full = _run_fast_slow(hess, theta_star, g, 0.1, 0.005, 5, eta_out=1.0)
    half = _run_fast_slow(hess, theta_star, g, 0.1, 0.005, 5, eta_out=0.5)
    assert torch.allclose(half, 0.5 * full, rtol=0, atol=1e-14), (half - 0.5 * full).abs().max()
    assert full.norm() > 1e-3


# ---------------------------------------------------------------------------------------------------------
# 6. Ablation switches


def _two_block_data(seed: int = 3):
    """Old data A lives strongly on inputs 2-3; new data B on inputs 0-1 with a faint trace on 2-3.

    With A in the buffer and B as the task, input columns 0-1 have F_R = 0 (ratio huge, mask 1) and columns
    2-3 have F_task << F_R (mask 0), yet B's gradient on columns 2-3 is not zero, so masking is visible.
    """
    gen = torch.Generator().manual_seed(seed)
    na, nb = 16, 16
    xa = torch.zeros(na, 4, dtype=torch.float64)
    xa[:, 2:] = 3.0 * torch.randn(na, 2, generator=gen, dtype=torch.float64)
    xb = torch.randn(nb, 4, generator=gen, dtype=torch.float64)
    xb[:, 2:] *= 0.05
    x = torch.cat([xa, xb])
    y = torch.randint(0, 3, (na + nb,), generator=gen)
    return x, y, torch.arange(na), torch.arange(na, na + nb)


def _method(x, y, **overrides) -> UGCLU:
    torch.manual_seed(7)
    model = nn.Linear(4, 3, bias=False).double()
    base = dict(
        lr=None,
        beta_R=0.1,
        K_in=0,
        eta_out=1.0,
        lam=0.5,
        batch_size=4,
        epochs_per_learn=2,
        iters_per_unlearn=6,
        alpha0_learn=1.0,
        alpha0_unlearn=1.0,
        clip=0.0,
        momentum=0.9,
        weight_decay=0.0,  # weight decay is unmasked by design; off so a masked weight must stay put
        buffer_size=100,
        gamma=1.0,
        use_mask=True,
    )
    base.update(overrides)
    return UGCLU(model, UGCLUHparams(**base), TrainAccess(x, y, lambda t: t), seed=0)


def test_mask_switch_is_applied_when_on_and_not_when_off() -> None:
    x, y, ids_a, ids_b = _two_block_data()
    after = {}
    for use_mask in (True, False):
        m = _method(x, y, use_mask=use_mask)
        m.learn(_request(ids_a, 0, "learn"))  # empty buffer: M = 1
        assert len(m.buffer) == len(ids_a)
        mask = m.saliency_mask(ids_b)[0]  # what the next request will compute, from the same model
        before = m.model.weight.detach().clone()
        m.data.touched.zero_()
        m.learn(_request(ids_b, 1, "learn"))
        after[use_mask] = (before, m.model.weight.detach().clone(), mask)
        # K_in = 0, so only the mask's Fisher pass over the buffer can read buffer (A) ids.
        touched_a = bool(m.data.touched[ids_a].any())
        assert touched_a == use_mask, (use_mask, touched_a)

    before, w_on, mask = after[True]
    assert torch.equal(mask[:, :2], torch.ones(3, 2, dtype=mask.dtype)), mask
    assert torch.equal(mask[:, 2:], torch.zeros(3, 2, dtype=mask.dtype)), mask
    # Mask on: the masked columns did not move at all; the others did.
    assert torch.equal(w_on[:, 2:], before[:, 2:])
    assert (w_on[:, :2] - before[:, :2]).abs().min() > 0
    # Mask off: from the same start, the same columns do move.
    before_off, w_off, _ = after[False]
    assert torch.equal(before_off, before)
    assert (w_off[:, 2:] - before[:, 2:]).abs().max() > 1e-6

    # gamma huge: every entry masked on the second request, so nothing moves (no wd, no slow steps). Columns
    # 0-1 have F_R = 0, so their ratio is F_task / 1e-15 ~ 1e13 here: gamma must exceed that, hence 1e30.
    m = _method(x, y, gamma=1e30)
    m.learn(_request(ids_a, 0, "learn"))
    assert float(m.saliency_mask(ids_b)[0].sum()) == 0.0
    start = m.model.weight.detach().clone()
    m.learn(_request(ids_b, 1, "learn"))
    assert torch.equal(m.model.weight, start)


def test_k_in_zero_fetches_no_buffer_batches() -> None:
    x, y, ids_a, ids_b = _two_block_data()
    u = ids_a[::3]
    touched = {}
    for k_in in (0, 2):
        # use_mask off: the mask's Fisher pass legitimately reads the buffer; here only the slow steps count.
        m = _method(x, y, K_in=k_in, use_mask=False)
        m.learn(_request(ids_a, 0, "learn"))
        m.buffer.purge(u)  # as the runner does before an unlearn
        m.data.touched.zero_()
        m.unlearn(_request(u, 1, "unlearn"))
        touched[k_in] = m.data.touched.nonzero().flatten()
    assert touched[0].tolist() == u.tolist(), touched[0]
    # Control: with slow steps the buffer (A minus U) is read, and still never an id of U's complement in B.
    remain = set(ids_a.tolist()) - set(u.tolist())
    assert set(touched[2].tolist()) & remain
    assert set(touched[2].tolist()) <= set(ids_a.tolist())


def test_lam_zero_is_uniform_and_lam_changes_the_step() -> None:
    x, y, ids_a, _ = _two_block_data()
    weights = {}
    for lam in (0.0, 0.5):
        m = _method(x, y, lam=lam, epochs_per_learn=1, batch_size=64)
        before = [p.detach().clone() for p in m.model.parameters()]
        loss = F.cross_entropy(m.model(x[ids_a]), y[ids_a], reduction="none")
        uniform = bool((sample_weights(loss, lam, "learn") == 1.0).all())
        assert uniform == (lam == 0.0), (lam, sample_weights(loss, lam, "learn"))
        m.learn(_request(ids_a, 0, "learn"))
        weights[lam] = [p.detach() - b for p, b in zip(m.model.parameters(), before, strict=True)]
    # lam = 0: the step is the plain mean-CE gradient step (one batch, momentum's first step = gradient).
    torch.manual_seed(7)
    ref = nn.Linear(4, 3, bias=False).double()
    (g,) = torch.autograd.grad(F.cross_entropy(ref(x[ids_a]), y[ids_a]), [ref.weight])
    assert torch.allclose(weights[0.0][0], -0.1 * g, atol=1e-12)
    assert not torch.allclose(weights[0.5][0], weights[0.0][0], atol=1e-6)


# ---------------------------------------------------------------------------------------------------------
# 7. Buffer purge privacy through a whole digits run


def test_buffer_never_holds_unlearned_ids_digits_run(tmp_path) -> None:
    config = load_config(
        CONFIG_DIR / "digits-agnostic-class.yaml",
        ["oracle.epochs=5", f"oracle.cache_dir={tmp_path}", "device=cpu", "threads=1"],
    )
    prep = prepare(config)
    hp = method_hparams(config, "ugclu", "digits", {"epochs_per_learn": 2, "iters_per_unlearn": 20})
    assert hp.buffer_size == 200  # from presets/best/ugclu-digits.yaml (the first digits memory budget)
    log: list[tuple[int, torch.Tensor, torch.Tensor]] = []

    def on_row(row, run) -> None:
        method = run.method
        log.append((row["request"], method.buffer.ids.clone(), method.data.blocked.clone()))

    rows = run_experiment(prep, "ugclu", hp, seed=0, on_row=on_row)
    sc = prep.scenario
    assert len(rows) == len(sc.requests) == len(log)
    purged_something = False
    for k, buf, blocked in log:
        request = sc.requests[k]
        unlearned = sc.unlearned(k)
        assert len(buf) <= hp.buffer_size, (k, len(buf))
        assert len(buf) > 0, k
        assert len(set(buf.tolist())) == len(buf), k  # no duplicates
        assert not unlearned[buf].any(), f"request {k}: unlearned ids in buffer"
        assert sc.owned(k)[buf].all(), k  # only owned ids
        if request.kind == "unlearn":
            assert blocked[unlearned].all(), k
            assert torch.equal(blocked, unlearned), k
            prev_buf = log[k - 1][1]
            purged_something |= bool(torch.isin(prev_buf, request.ids).any())
    # The check is not vacuous: some unlearn request found its ids in the buffer and purged them.
    assert purged_something
    assert all(r["method"] == "ugclu" for r in rows)
