"""Label ablations of the label paper, each against hand computation."""

import math

import numpy as np
import pytest
import torch
from distilled_helpers import rgb_dataset

from gift_hf import keep_topk, label_entropy_stats, map_soft_labels, remove_class_knowledge, swap_topk

P = torch.tensor([[0.10, 0.50, 0.25, 0.15], [0.40, 0.05, 0.30, 0.25]])


def test_swap_topk_exchanges_the_kth_largest_with_the_smallest():
    # row 0 sorted: 0.50 (1), 0.25 (2), 0.15 (3), 0.10 (0); row 1: 0.40 (0), 0.30 (2), 0.25 (3), 0.05 (1)
    assert torch.equal(swap_topk(P, 1), torch.tensor([[0.50, 0.10, 0.25, 0.15], [0.05, 0.40, 0.30, 0.25]]))
    assert torch.equal(swap_topk(P, 2), torch.tensor([[0.25, 0.50, 0.10, 0.15], [0.40, 0.30, 0.05, 0.25]]))
    assert torch.equal(swap_topk(P, 4), P)  # the smallest swapped with itself
    assert torch.equal(P, torch.tensor([[0.10, 0.50, 0.25, 0.15], [0.40, 0.05, 0.30, 0.25]]))  # input untouched
    # the set of values per row is kept
    assert torch.equal(swap_topk(P, 3).sort(1).values, P.sort(1).values)


def test_keep_topk_zeroes_the_rest_without_renormalising():
    assert torch.equal(keep_topk(P, 2), torch.tensor([[0.0, 0.50, 0.25, 0.0], [0.40, 0.0, 0.30, 0.0]]))
    assert torch.equal(keep_topk(P, 4), P)
    out = keep_topk(P.numpy(), 1)  # numpy in, numpy out
    assert isinstance(out, np.ndarray) and out.dtype == np.float32
    np.testing.assert_array_equal(out, np.array([[0, 0.5, 0, 0], [0.4, 0, 0, 0]], dtype=np.float32))


def test_remove_class_knowledge_zeroes_the_column_of_other_classes_rows():
    labels = torch.tensor([2, 0])
    assert torch.equal(
        remove_class_knowledge(P, 2, labels),  # row 0 is class 2: keeps its entry
        torch.tensor([[0.10, 0.50, 0.25, 0.15], [0.40, 0.05, 0.0, 0.25]]),
    )
    assert torch.equal(remove_class_knowledge(P, 0), torch.tensor([[0.0, 0.50, 0.25, 0.15], [0.0, 0.05, 0.30, 0.25]]))


def test_label_entropy_stats_by_hand():
    h0 = -sum(p * math.log(p) for p in (0.10, 0.50, 0.25, 0.15))
    h1 = -sum(p * math.log(p) for p in (0.40, 0.05, 0.30, 0.25))
    stats = label_entropy_stats(P, labels=[1, 2])
    assert stats["mean_entropy"] == pytest.approx((h0 + h1) / 2, rel=1e-6)
    assert stats["std_entropy"] == pytest.approx(abs(h0 - h1) / 2, rel=1e-5)
    assert (stats["min_entropy"], stats["max_entropy"]) == (
        pytest.approx(min(h0, h1), rel=1e-6),
        pytest.approx(max(h0, h1), rel=1e-6),
    )
    assert stats["mean_normalized_entropy"] == pytest.approx((h0 + h1) / 2 / math.log(4), rel=1e-6)
    assert stats["mean_max_probability"] == pytest.approx(0.45)
    assert stats["mean_effective_classes"] == pytest.approx((math.exp(h0) + math.exp(h1)) / 2, rel=1e-6)
    assert stats["top1_agreement"] == 0.5  # row 0 argmax 1 == label 1; row 1 argmax 0 != 2
    # top-k-kept rows are renormalised: [0.5, 0.25] → entropy of [2/3, 1/3]
    kept = label_entropy_stats(keep_topk(P[:1], 2))
    assert kept["mean_entropy"] == pytest.approx(-(2 / 3 * math.log(2 / 3) + 1 / 3 * math.log(1 / 3)), rel=1e-6)
    # logits go through softmax(z / T)
    logits = torch.tensor([[2.0, 0.0, 0.0]])
    q = torch.softmax(logits / 2.0, 1)[0]
    by_hand = -float((q * q.log()).sum())
    assert label_entropy_stats(logits, kind="logits", temperature=2.0)["mean_entropy"] == pytest.approx(by_hand)


def test_ablation_errors():
    with pytest.raises(ValueError, match=r"k: got 5; expected an integer in \[1, 4\]"):
        swap_topk(P, 5)
    with pytest.raises(ValueError, match=r"k: got 0; expected an integer in \[1, 4\]"):
        keep_topk(P, 0)
    with pytest.raises(ValueError, match=r"cls: got 4; expected a class id in \[0, 3\]"):
        remove_class_knowledge(P, 4)
    with pytest.raises(ValueError, match=r"labels must have shape \(2,\) like soft's rows, got \(3,\)"):
        remove_class_knowledge(P, 1, [0, 1, 2])
    with pytest.raises(ValueError, match=r"soft must have shape \(N, C\), got \(4,\)"):
        keep_topk(P[0], 1)
    with pytest.raises(ValueError, match=r"soft has negative entries but kind='probabilities'"):
        label_entropy_stats(-P)


def test_map_soft_labels_applies_an_ablation_to_a_dataset():
    ds = rgb_dataset(n=4)
    soft = np.asarray(ds["soft_label"], dtype=np.float32)
    kept = map_soft_labels(ds, keep_topk, k=1)
    np.testing.assert_array_equal(np.asarray(kept["soft_label"], dtype=np.float32), keep_topk(soft, 1))
    assert kept.features["soft_label"] == ds.features["soft_label"]
    removed = map_soft_labels(ds, remove_class_knowledge, cls=0, pass_labels=True)
    np.testing.assert_array_equal(
        np.asarray(removed["soft_label"], dtype=np.float32), remove_class_knowledge(soft, 0, ds["label"])
    )
    with pytest.raises(ValueError, match=r"dataset has no 'soft_label' column \(dense soft labels\)"):
        map_soft_labels(rgb_dataset(soft="topk"), keep_topk, k=1)
