"""CrossDistil parts: quadruplet loss by hand, calibration, soft-label correction, warm-up,
stop-gradient, and a tiny end-to-end fit."""

from __future__ import annotations

import math
from dataclasses import replace

import pytest
import torch
import torch.nn.functional as F
from scipy.stats import spearmanr

from graphrec.errors import ConfigError
from graphrec.models.mtl.crossdistil import (
    CrossDistil,
    CrossDistilConfig,
    PlattCalibration,
    alpha_at,
    correct_soft_labels,
    group_rank,
    kd_loss,
    quadruplet_loss,
)


def sp(x: float) -> float:
    """-log sigmoid(x)."""
    return math.log1p(math.exp(-x))


# groups: 0 ++, 1 +-, 2 +-, 3 -+, 4 --, 5 --
SCORES = torch.tensor([2.0, 1.0, 0.0, 0.5, -1.0, 0.0])
Y_A = torch.tensor([1.0, 1.0, 1.0, 0.0, 0.0, 0.0])
Y_B = torch.tensor([1.0, 0.0, 0.0, 1.0, 0.0, 0.0])


def test_group_rank_orders():
    assert group_rank(Y_A, Y_B, "a").tolist() == [0, 1, 1, 2, 3, 3]
    assert group_rank(Y_A, Y_B, "b").tolist() == [0, 2, 2, 1, 3, 3]


def test_quadruplet_loss_task_a_by_hand():
    # (++, +-): r_0 - r_{1,2} = 1, 2        -> (sp(1) + sp(2)) / 2      = 0.22009485
    # (+-, -+): r_{1,2} - r_3 = 0.5, -0.5   -> (sp(.5) + sp(-.5)) / 2   = 0.72407698
    # (-+, --): r_3 - r_{4,5} = 1.5, 0.5    -> (sp(1.5) + sp(.5)) / 2   = 0.33774513
    expected = (sp(1) + sp(2)) / 2 + (sp(0.5) + sp(-0.5)) / 2 + (sp(1.5) + sp(0.5)) / 2
    assert expected == pytest.approx(1.28191696, abs=1e-7)
    loss = quadruplet_loss(SCORES, Y_A, Y_B, task="a")
    assert loss.item() == pytest.approx(expected, abs=1e-6)


def test_quadruplet_loss_task_b_by_hand():
    # order ++ > -+ > +- > --
    # (++, -+): 2 - 0.5 = 1.5                         -> sp(1.5)                    = 0.20141328
    # (-+, +-): 0.5 - 1, 0.5 - 0 = -0.5, 0.5           -> (sp(-.5) + sp(.5)) / 2    = 0.72407698
    # (+-, --): 1+1, 1-0, 0+1, 0-0 = 2, 1, 1, 0        -> (sp(2)+2 sp(1)+sp(0)) / 4 = 0.36164964
    expected = sp(1.5) + (sp(-0.5) + sp(0.5)) / 2 + (sp(2) + 2 * sp(1) + sp(0)) / 4
    assert expected == pytest.approx(1.28713990, abs=1e-7)
    loss = quadruplet_loss(SCORES, Y_A, Y_B, task="b")
    assert loss.item() == pytest.approx(expected, abs=1e-6)


def test_quadruplet_loss_margins_and_weights_by_hand():
    # margin 0.5 and weight 2 on (++, +-): diffs 1, 2 -> 0.5, 1.5; the other two pairs as above
    expected = 2 * (sp(0.5) + sp(1.5)) / 2 + (sp(0.5) + sp(-0.5)) / 2 + (sp(1.5) + sp(0.5)) / 2
    assert expected == pytest.approx(1.73731238, abs=1e-7)
    loss = quadruplet_loss(SCORES, Y_A, Y_B, margins=(0.5, 0, 0), weights=(2, 1, 1))
    assert loss.item() == pytest.approx(expected, abs=1e-6)


def test_quadruplet_loss_empty_group_is_skipped():
    keep = torch.tensor([0, 1, 2, 4, 5])  # no -+ sample
    s, ya, yb = SCORES[keep].requires_grad_(), Y_A[keep], Y_B[keep]
    # adjacent: only (++, +-) is left; (+-, -+) and (-+, --) are skipped
    adjacent = quadruplet_loss(s, ya, yb)
    assert adjacent.item() == pytest.approx((sp(1) + sp(2)) / 2, abs=1e-6)
    # all pairs: (++, +-) 0.22009485 + (++, --) (sp(3) + sp(2)) / 2 = 0.08775768
    #            + (+-, --) (sp(2) + 2 sp(1) + sp(0)) / 4 = 0.36164964
    expected = (sp(1) + sp(2)) / 2 + (sp(3) + sp(2)) / 2 + (sp(2) + 2 * sp(1) + sp(0)) / 4
    assert expected == pytest.approx(0.66950217, abs=1e-7)
    every = quadruplet_loss(s, ya, yb, pairs="all")
    assert every.item() == pytest.approx(expected, abs=1e-6)
    every.backward()
    assert torch.isfinite(s.grad).all()


@pytest.mark.parametrize("labels", [(1.0, 1.0), (0.0, 1.0), (0.0, 0.0)])
def test_quadruplet_loss_single_group_is_a_zero_with_grad(labels):
    s = torch.randn(5, requires_grad=True)
    ya, yb = torch.full((5,), labels[0]), torch.full((5,), labels[1])
    for pairs in ("adjacent", "all"):
        loss = quadruplet_loss(s, ya, yb, pairs=pairs)
        assert loss.item() == 0.0 and loss.grad_fn is not None
        (grad,) = torch.autograd.grad(loss, s)
        assert torch.equal(grad, torch.zeros(5))


def test_quadruplet_loss_matches_brute_force():
    g = torch.Generator().manual_seed(0)
    s = torch.randn(40, generator=g, dtype=torch.float64)
    ya = (torch.rand(40, generator=g) < 0.4).double()
    yb = (torch.rand(40, generator=g) < 0.3).double()
    margins, weights = (0.1, 0.2, 0.0, 0.3, 0.0, 0.5), (1.0, 0.5, 2.0, 1.0, 0.0, 3.0)
    pairs = ((0, 1), (0, 2), (0, 3), (1, 2), (1, 3), (2, 3))
    for task in ("a", "b"):
        rank = group_rank(ya, yb, task).tolist()
        expected = 0.0
        for (hi, lo), m, w in zip(pairs, margins, weights, strict=True):
            terms = [
                sp(s[i].item() - s[j].item() - m)
                for i in range(40)
                for j in range(40)
                if rank[i] == hi and rank[j] == lo
            ]
            expected += w * sum(terms) / len(terms)
        loss = quadruplet_loss(s, ya, yb, task=task, pairs="all", margins=margins, weights=weights)
        assert loss.item() == pytest.approx(expected, rel=1e-12)


def test_quadruplet_loss_is_stable_for_large_gaps():
    s = torch.tensor([200.0, -200.0], requires_grad=True)
    loss = quadruplet_loss(s, torch.tensor([1.0, 0.0]), torch.tensor([0.0, 0.0]), pairs="all")
    wrong = quadruplet_loss(s, torch.tensor([0.0, 1.0]), torch.tensor([0.0, 0.0]), pairs="all")
    assert loss.item() == 0.0 and wrong.item() == pytest.approx(400.0)
    wrong.backward()
    assert torch.isfinite(s.grad).all()


def test_quadruplet_loss_rejects_bad_arguments():
    with pytest.raises(ConfigError, match="pairs"):
        quadruplet_loss(SCORES, Y_A, Y_B, pairs="some")
    with pytest.raises(ConfigError, match="task"):
        quadruplet_loss(SCORES, Y_A, Y_B, task="c")
    with pytest.raises(ConfigError, match="margins needs 3"):
        quadruplet_loss(SCORES, Y_A, Y_B, margins=(0.1, 0.2))
    with pytest.raises(ConfigError, match="weights needs 6"):
        quadruplet_loss(SCORES, Y_A, Y_B, pairs="all", weights=(1, 1, 1))
    with pytest.raises(ConfigError, match="shape"):
        quadruplet_loss(SCORES, Y_A[:3], Y_B)


def test_platt_calibration_is_monotone_and_starts_at_identity():
    cal = PlattCalibration()
    r = torch.linspace(-5, 5, 101)
    assert torch.allclose(cal(r), r)
    with torch.no_grad():
        cal.theta.fill_(-3.0)  # a = softplus(-3) ~ 0.049, still > 0
        cal.bias.fill_(2.0)
    p = torch.sigmoid(cal(r))
    assert cal.scale.item() > 0 and (p.diff() > 0).all()
    cal.reset_parameters()
    assert cal.scale.item() == pytest.approx(1.0) and cal.bias.item() == 0.0


def test_calibration_step_leaves_teacher_ranking_unchanged():
    torch.manual_seed(0)
    x = torch.randn(64, 8)
    y = (x[:, 0] > 0.3).float()
    model = CrossDistil(8)
    teacher, cal = model.teachers[0], model.calibrators[0]
    r = teacher(x).squeeze(-1)
    # the calibration loss has no gradient with respect to r
    r_leaf = r.detach().requires_grad_()
    assert torch.autograd.grad(cal.loss(r_leaf, y), r_leaf, allow_unused=True) == (None,)
    before = r.detach().clone()
    p_before = torch.sigmoid(cal(before))
    opt = torch.optim.SGD(model.parameters(), lr=0.5)
    loss_before = cal.loss(r, y)
    loss_before.backward()
    assert all(q.grad is None for q in teacher.parameters())
    opt.step()
    after = teacher(x).squeeze(-1).detach()
    assert torch.equal(before, after)
    assert spearmanr(before.numpy(), after.numpy()).statistic == pytest.approx(1.0)
    p_after = torch.sigmoid(cal(after))
    assert not torch.equal(p_before, p_after)  # the calibrator did move
    assert spearmanr(after.numpy(), p_after.detach().numpy()).statistic == pytest.approx(1.0)
    assert cal.loss(after, y).item() < loss_before.item()


def test_correct_soft_labels_by_hand():
    p = torch.tensor([0.9, 0.2, 0.4, 0.7, 0.5])
    y = torch.tensor([1.0, 1.0, 0.0, 0.0, 1.0])
    assert torch.equal(correct_soft_labels(p, y), p)
    # 0.2 with y = 1 and 0.7 with y = 0 are on the wrong side; 0.5 is on neither side
    override = correct_soft_labels(p, y, "override")
    assert torch.allclose(override, torch.tensor([0.9, 1.0, 0.4, 0.0, 0.5]))
    # 0.7 p + 0.3 y: 0.63 + 0.3, 0.14 + 0.3, 0.28, 0.49, 0.35 + 0.3
    blend = correct_soft_labels(p, y, "blend", 0.3)
    assert torch.allclose(blend, torch.tensor([0.93, 0.44, 0.28, 0.49, 0.65]))
    with pytest.raises(ConfigError, match="correction"):
        correct_soft_labels(p, y, "flip")
    with pytest.raises(ConfigError, match="blend"):
        correct_soft_labels(p, y, "blend", 1.5)


def test_kd_loss_is_bce_against_soft_labels():
    z = torch.tensor([0.0, 2.0, -1.0])
    p = torch.tensor([0.5, 0.25, 1.0])
    by_hand = -(p * torch.log(torch.sigmoid(z)) + (1 - p) * torch.log(1 - torch.sigmoid(z)))
    assert kd_loss(z, p).item() == pytest.approx(by_hand.mean().item(), abs=1e-6)


def test_alpha_warmup_schedule():
    assert [alpha_at(s, 0.5, 4) for s in (0, 1, 2, 4, 10)] == [0.0, 0.125, 0.25, 0.5, 0.5]
    assert alpha_at(0, 0.5, 0) == 0.5
    with pytest.raises(ConfigError, match="step"):
        alpha_at(-1, 0.5, 4)


def _batch(seed: int = 0, n: int = 32, width: int = 6):
    g = torch.Generator().manual_seed(seed)
    h = [torch.randn(n, width, generator=g, requires_grad=True) for _ in range(2)]
    z = torch.randn(n, 2, generator=g, requires_grad=True)
    y = torch.stack([torch.arange(n) % 2, (torch.arange(n) // 2) % 2], 1).float()
    return h, z, y


def test_total_is_the_sum_of_its_parts():
    torch.manual_seed(0)
    cfg = CrossDistilConfig(alpha=0.8, warmup_steps=10, correction="blend")
    model = CrossDistil(6, cfg)
    h, z, y = _batch()
    total, parts = model(h, z, y, step=5)
    assert parts["alpha"].item() == pytest.approx(0.4)
    by_parts = sum(
        parts[f"bce_{t}"] + 0.4 * parts[f"kd_{t}"] + parts[f"teacher_{t}"] + parts[f"cal_{t}"]
        for t in "ab"
    )
    assert total.item() == pytest.approx(by_parts.item(), abs=1e-5)
    r = model.teacher_scores(h).detach()
    assert parts["teacher_b"].item() == pytest.approx(
        quadruplet_loss(r[:, 1], y[:, 0], y[:, 1], task="b").item(), abs=1e-6
    )
    p = model.teacher_proba(h)
    soft = correct_soft_labels(p[:, 0], y[:, 0], "blend", 0.3)
    assert parts["kd_a"].item() == pytest.approx(kd_loss(z[:, 0], soft).item(), abs=1e-6)
    # the same with sequences of [B] tensors
    total2, _ = model(h, [z[:, 0], z[:, 1]], [y[:, 0], y[:, 1]], step=5)
    assert torch.equal(total, total2)


def test_plain_kd_trains_the_teacher_with_bce():
    torch.manual_seed(0)
    model = CrossDistil(6, CrossDistilConfig(mode="kd"))
    h, z, y = _batch()
    _, parts = model(h, z, y, step=0)
    r = model.teacher_scores(h).detach()
    for t, name in enumerate("ab"):
        bce = F.binary_cross_entropy_with_logits(r[:, t], y[:, t])
        assert parts[f"teacher_{name}"].item() == pytest.approx(bce.item(), abs=1e-6)


def _teacher_grads(cfg: CrossDistilConfig) -> list[torch.Tensor]:
    torch.manual_seed(0)
    model = CrossDistil(6, cfg)
    h, z, y = _batch()
    total, _ = model(h, z, y, step=0)
    total.backward()
    return [p.grad.clone() for p in model.parameters()] + [z.grad.clone()]


def test_kd_gradient_does_not_reach_the_teacher_under_stop_gradient():
    cfg = CrossDistilConfig(alpha=0.0)
    no_kd = _teacher_grads(cfg)
    with_kd = _teacher_grads(replace(cfg, alpha=1.0))
    # teacher towers and calibrators: identical gradients with and without distillation
    for a, b in zip(no_kd[:-1], with_kd[:-1], strict=True):
        assert torch.equal(a, b)
    assert not torch.equal(no_kd[-1], with_kd[-1])  # the student does get the KD gradient
    # the ablation lets it through
    leaky = _teacher_grads(replace(cfg, alpha=1.0, kd_into_teacher=True))
    assert any(not torch.equal(a, b) for a, b in zip(no_kd[:-1], leaky[:-1], strict=True))


def test_detach_backbone_keeps_teacher_losses_off_the_tower_inputs():
    model = CrossDistil(6, CrossDistilConfig(detach_backbone=True))
    h, z, y = _batch()
    model(h, z, y, step=0)[0].backward()
    assert h[0].grad is None and h[1].grad is None
    model = CrossDistil(6)
    h, z, y = _batch()
    model(h, z, y, step=0)[0].backward()
    assert h[0].grad is not None and h[0].grad.abs().sum() > 0


def test_config_and_shapes_are_checked():
    with pytest.raises(ConfigError, match="mode"):
        CrossDistilConfig(mode="online")
    with pytest.raises(ConfigError, match="margins needs 6"):
        CrossDistilConfig(pairs="all", margins=(0.1,) * 3)
    with pytest.raises(ConfigError, match="alpha"):
        CrossDistilConfig(alpha=-1.0)
    with pytest.raises(ConfigError, match="in_channels"):
        CrossDistil([4, 4, 4])
    h, z, y = _batch()
    with pytest.raises(ConfigError, match="student_logits"):
        CrossDistil(6)(h, z[:, :1], y, step=0)
    with pytest.raises(ConfigError, match="tower_inputs"):
        CrossDistil(6)(h[:1], z, y, step=0)


def test_end_to_end_teacher_separates_the_four_groups():
    torch.manual_seed(0)
    n = 256
    groups = torch.arange(n) % 4  # 0: ++, 1: +-, 2: -+, 3: --
    y = torch.stack([(groups < 2).float(), (groups % 2 == 0).float()], 1)
    x = F.one_hot(groups, 4).float() + 0.3 * torch.randn(n, 4)
    x = torch.cat([x, torch.randn(n, 4)], 1)
    student = torch.nn.Linear(8, 2)
    model = CrossDistil(8, CrossDistilConfig(teacher_hidden=(16,), warmup_steps=20))
    opt = torch.optim.Adam([*student.parameters(), *model.parameters()], lr=0.02)
    for step in range(150):
        opt.zero_grad()
        loss, _ = model([x, x], student(x), y, step=step)
        loss.backward()
        opt.step()
    r = model.teacher_scores([x, x]).detach()
    means = torch.stack([r[groups == g].mean(0) for g in range(4)])  # [group, task]
    assert means[0, 0] > means[1, 0] > means[2, 0] > means[3, 0]  # A: ++ > +- > -+ > --
    assert means[0, 1] > means[2, 1] > means[1, 1] > means[3, 1]  # B: ++ > -+ > +- > --
    # the calibrated teacher is on the right side of 0.5 for most samples of each task
    p = model.teacher_proba([x, x])
    assert ((p > 0.5).float() == y).float().mean() > 0.9
