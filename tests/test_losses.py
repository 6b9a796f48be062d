"""Every loss of the zoo against hand computation on small tensors."""

import math

import pytest
import torch
from host_reads import forbid_host_reads

from gift_hf import LOSSES, get_loss, refine_soft_labels
from gift_hf.engine.losses import check_class_ids, check_finite, smooth_labels

Z = torch.tensor([[2.0, 0.0, -1.0], [0.5, 1.5, 0.0]])  # student logits
T = torch.tensor([[1.0, 2.0, 0.0], [0.0, 3.0, 1.0]])  # teacher logits
Y = torch.tensor([0, 1])


def softmax(row, temp=1.0):
    exps = [math.exp(v / temp) for v in row]
    total = sum(exps)
    return [e / total for e in exps]


def norm(row):
    length = math.sqrt(sum(v * v for v in row))
    return [v / length for v in row]


def cos(a, b):
    return sum(x * y for x, y in zip(a, b)) / (math.sqrt(sum(x * x for x in a)) * math.sqrt(sum(y * y for y in b)))


def hand_ce(z, y):
    return -math.log(softmax(z)[y])


def test_registry_has_the_papers_loss_names():
    assert set(LOSSES) == {"ce", "kl", "soft_ce", "mse", "mse_ce", "soft_ce_ce", "cosine", "gift", "hf_kd"}


def test_ce():
    expected = sum(hand_ce(z, y) for z, y in zip(Z.tolist(), Y.tolist())) / 2
    assert get_loss("ce")(Z, None, Y).item() == pytest.approx(expected, rel=1e-6)


@pytest.mark.parametrize("temp,t_squared", [(1.0, False), (20.0, False), (4.0, True)])
def test_kl(temp, t_squared):
    per = []
    for z, t in zip(Z.tolist(), T.tolist()):
        p, q = softmax(t, temp), softmax(z, temp)
        per.append(sum(pi * math.log(pi / qi) for pi, qi in zip(p, q)) * (temp**2 if t_squared else 1))
    got = get_loss("kl", temperature=temp, t_squared=t_squared)(Z, T, Y).item()
    assert got == pytest.approx(sum(per) / 2, rel=1e-4)


@pytest.mark.parametrize("kwargs,temp,lam", [({}, 5.0, 0.5), ({"temperature": 2.0, "kd_lambda": 0.25}, 2.0, 0.25)])
def test_hf_kd_is_the_transformers_guide_loss(kwargs, temp, lam):
    # λ·T²·KL(softmax(t/T) ‖ softmax(z/T)) + (1 − λ)·CE(z, y); defaults T = 5, λ = 0.5 as in the guide
    per = []
    for z, t, y in zip(Z.tolist(), T.tolist(), Y.tolist()):
        p, q = softmax(t, temp), softmax(z, temp)
        kl = sum(pi * math.log(pi / qi) for pi, qi in zip(p, q))
        per.append(lam * temp**2 * kl + (1 - lam) * hand_ce(z, y))
    assert get_loss("hf_kd", **kwargs)(Z, T, Y).item() == pytest.approx(sum(per) / 2, rel=1e-5)
    # first row at the defaults, written out: p = softmax([0.2, 0.4, 0]), q = softmax([0.4, 0, -0.2])
    if not kwargs:
        assert per[0] == pytest.approx(0.5 * 25 * 0.0339933 + 0.5 * 0.1698460, rel=1e-5)
    with pytest.raises(ValueError, match="kd_lambda must be in"):
        get_loss("hf_kd", kd_lambda=1.5)


def test_kl_default_is_the_reference_convention():
    loss = get_loss("kl")
    assert loss.kwargs == {} and LOSSES["kl"].fn.__defaults__ == (20.0, False)


def test_soft_ce():
    per = [-sum(p * math.log(q) for p, q in zip(softmax(t), softmax(z))) for z, t in zip(Z.tolist(), T.tolist())]
    assert get_loss("soft_ce")(Z, T, Y).item() == pytest.approx(sum(per) / 2, rel=1e-6)


def test_mse():
    per = [sum((a - b) ** 2 for a, b in zip(z, t)) / 3 for z, t in zip(Z.tolist(), T.tolist())]
    assert get_loss("mse")(Z, T, Y).item() == pytest.approx(sum(per) / 2, rel=1e-6)


def test_mse_ce_and_soft_ce_ce():
    mse = [sum((a - b) ** 2 for a, b in zip(z, t)) / 3 for z, t in zip(Z.tolist(), T.tolist())]
    sce = [-sum(p * math.log(q) for p, q in zip(softmax(t), softmax(z))) for z, t in zip(Z.tolist(), T.tolist())]
    ce = [hand_ce(z, y) for z, y in zip(Z.tolist(), Y.tolist())]
    assert get_loss("mse_ce")(Z, T, Y).item() == pytest.approx(sum(m + 0.1 * c for m, c in zip(mse, ce)) / 2, rel=1e-6)
    got = get_loss("soft_ce_ce", ce_weight=0.5)(Z, T, Y).item()
    assert got == pytest.approx(sum(s + 0.5 * c for s, c in zip(sce, ce)) / 2, rel=1e-6)


def test_cosine():
    per = [1 - cos(z, t) for z, t in zip(Z.tolist(), T.tolist())]
    assert get_loss("cosine")(Z, T, Y).item() == pytest.approx(sum(per) / 2, rel=1e-6)


def test_smoothing_matches_the_gift_paper():
    s = smooth_labels(torch.tensor([2]), 5, smoothing=0.1)
    assert s.tolist()[0] == pytest.approx([0.025, 0.025, 0.9, 0.025, 0.025])


def test_refine_soft_labels_by_hand():
    gamma, alpha = 0.1, 0.1
    r = refine_soft_labels(T, Y, 3, gamma=gamma, smoothing=alpha)
    for row, t, y in zip(r.tolist(), T.tolist(), Y.tolist()):
        s = [alpha / 2] * 3
        s[y] = 1 - alpha
        expected = [a + gamma * b for a, b in zip(norm(t), norm(s))]
        assert row == pytest.approx(expected, rel=1e-6)


def test_gift_by_hand():
    r = refine_soft_labels(T, Y, 3)
    per = [1 - cos(z, rr) for z, rr in zip(Z.tolist(), r.tolist())]
    assert get_loss("gift")(Z, T, Y).item() == pytest.approx(sum(per) / 2, rel=1e-6)


def test_gift_is_scale_invariant_in_teacher_logits():
    loss = get_loss("gift")
    base = loss(Z, T, Y)
    for scale in (0.01, 3.0, 250.0):
        assert loss(Z, T * scale, Y).item() == pytest.approx(base.item(), rel=1e-5)


def test_gift_equals_the_convex_form():
    gamma = 0.3
    w = gamma / (1 + gamma)
    t_hat = torch.nn.functional.normalize(T, dim=-1)
    s_hat = torch.nn.functional.normalize(smooth_labels(Y, 3, 0.1), dim=-1)
    convex = (1 - w) * t_hat + w * s_hat
    expected = (1 - torch.nn.functional.cosine_similarity(Z, convex, dim=-1)).mean()
    assert get_loss("gift", gamma=gamma)(Z, T, Y).item() == pytest.approx(expected.item(), rel=1e-6)


def test_gift_accepts_mixed_label_distributions():
    """After CutMix/MixUp labels are distributions; smoothing is applied linearly."""
    mixed = torch.tensor([[0.7, 0.3, 0.0], [0.0, 1.0, 0.0]])
    s = smooth_labels(mixed, 3, 0.1)
    assert s[0].tolist() == pytest.approx([0.7 * 0.9 + 0.3 * 0.05, 0.7 * 0.05 + 0.3 * 0.9, 0.05])
    # a one-hot distribution gives the same loss as its class id
    assert get_loss("gift")(Z[1:], T[1:], mixed[1:]).item() == pytest.approx(
        get_loss("gift")(Z[1:], T[1:], Y[1:]).item(), rel=1e-6
    )


def test_reductions_and_float32_under_bf16():
    loss = get_loss("gift")
    per = loss(Z, T, Y, reduction="none")
    assert per.shape == (2,)
    assert loss(Z, T, Y, reduction="sum").item() == pytest.approx(per.sum().item())
    out = loss(Z.bfloat16(), T.bfloat16(), Y)
    assert out.dtype == torch.float32


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_every_loss_is_differentiable(name):
    z = Z.clone().requires_grad_(True)
    get_loss(name)(z, T, Y).backward()
    assert z.grad is not None and torch.isfinite(z.grad).all() and z.grad.abs().sum() > 0


def test_unknown_loss_name():
    with pytest.raises(ValueError, match="unknown loss 'focal'.*expected one of"):
        get_loss("focal")


def test_bad_shapes_and_values():
    loss = get_loss("gift")
    with pytest.raises(ValueError, match=r"soft-label width 4 != number of classes 3"):
        loss(Z, torch.zeros(2, 4), Y)
    with pytest.raises(ValueError, match="needs teacher logits"):
        loss(Z, None, Y)
    with pytest.raises(ValueError, match="shape \\(batch, num_classes\\)"):
        loss(Z[0], T, Y)
    with pytest.raises(ValueError, match="smoothing must be in"):
        get_loss("gift", smoothing=1.5)
    with pytest.raises(ValueError, match="temperature must be a positive"):
        get_loss("kl", temperature=0)


def test_host_value_checks_name_the_column_and_the_value():
    with pytest.raises(ValueError, match=r"column 'label': value 3 is out of range.*\[0, 2\]"):
        check_class_ids("column 'label'", torch.tensor([0, 3]), 3)
    with pytest.raises(ValueError, match=r"value -1 is out of range"):
        check_class_ids("labels", [-1, 0], 3)
    check_class_ids("labels", [0, 2], 3)
    with pytest.raises(ValueError, match=r"column 'soft_label' contains 1 NaN/inf"):
        check_finite("column 'soft_label'", [[1.0, float("nan"), 0.0], [0.0, 1.0, 2.0]])
    check_finite("x", [[1.0, 2.0]])


@pytest.mark.parametrize("name", sorted(LOSSES))
def test_losses_never_read_values_back_to_the_host(name):
    """No `.item()`, `bool()` or `int()` of a tensor in a loss: on a GPU each is a synchronisation."""
    with forbid_host_reads():
        out = get_loss(name)(Z, T, Y, reduction="sum")
    assert torch.isfinite(out)
    with pytest.raises(AssertionError, match="host read"), forbid_host_reads():
        bool(out > 0)  # the control: the guard does catch a read


def test_gift_config_builds_hf_kd_with_its_lambda():
    from gift_hf import GIFTConfig

    loss = GIFTConfig(output_dir="x", loss="hf_kd", kd_lambda=0.3, temperature=2.0).build_loss()
    assert loss.kwargs == {"kd_lambda": 0.3, "temperature": 2.0} and loss.needs_labels and loss.needs_teacher
    assert GIFTConfig(output_dir="x", loss="hf_kd").build_loss().kwargs == {}  # the guide's defaults T=5, λ=0.5
    with pytest.raises(ValueError, match=r"kd_lambda: got 2.0; expected a number in \[0, 1\]"):
        GIFTConfig(output_dir="x", loss="hf_kd", kd_lambda=2.0)
