"""Label correction rules: the mean-label invariant, hand-computed cases, edge cases."""

import math

import pytest
import torch

from graphrec.errors import ConfigError
from graphrec.ondevice import CORRECTIONS, correct_labels

CASES = [
    [1.0, 0.0, 0.0, 0.0, 0.0],  # r = 0.2 < g
    [1.0, 1.0, 1.0, 1.0, 0.0],  # r = 0.8 > g
    [0.0, 0.0, 0.0],  # r = 0
    [1.0, 1.0, 1.0],  # r = 1
    [1.0],  # a single sample
    [0.0],
    [1.0, 0.0, 1.0, 0.0, 1.0, 0.0, 0.0],
]


def effective_mean(labels, g, rule):
    """Mean of the labels the rule trains on (offset: the effective labels y - p + g, where
    p = sigmoid(logit(g) + offset) must be the local share, at the cloud prior)."""
    c = correct_labels(torch.tensor(labels), g, rule, scores=torch.arange(len(labels)) * 0.1,
                       generator=torch.Generator().manual_seed(0))  # fmt: skip
    if rule != "offset" or c.offset == 0.0:
        return float(c.labels.mean())
    prior = torch.sigmoid(torch.tensor(math.log(g / (1 - g)) + c.offset, dtype=torch.float64))
    assert float(prior) == pytest.approx(c.local_share, abs=1e-12)
    return float((c.labels - prior + g).mean())


@pytest.mark.parametrize("rule", [r for r in CORRECTIONS if r != "none"])
@pytest.mark.parametrize("labels", CASES)
@pytest.mark.parametrize("g", [0.555, 0.3, 0.05, 0.95])
def test_mean_label_equals_global_share(rule, labels, g):
    assert effective_mean(labels, g, rule) == pytest.approx(g, abs=1e-12)


def test_soft_hand_computed():
    # r = 0.2 < g = 0.6: negatives become (0.6 - 0.2) / 0.8 = 0.5
    c = correct_labels(torch.tensor([1.0, 0.0, 0.0, 0.0, 0.0]), 0.6, "soft")
    assert c.labels.tolist() == pytest.approx([1.0, 0.5, 0.5, 0.5, 0.5])
    # r = 1: every label becomes g
    c = correct_labels(torch.tensor([1.0, 1.0]), 0.25, "soft")
    assert c.labels.tolist() == [0.25, 0.25]
    # a single negative sample: g
    assert correct_labels(torch.tensor([0.0]), 0.4, "soft").labels.tolist() == [0.4]


def test_flip_by_score_hand_computed():
    # r = 0.2, g = 0.5, n = 5: m = 1.5 negatives move to 1, highest scores first
    labels = torch.tensor([1.0, 0.0, 0.0, 0.0, 0.0])
    scores = torch.tensor([0.9, 0.1, 0.8, 0.3, 0.5])
    c = correct_labels(labels, 0.5, "flip", scores=scores)
    assert c.labels.tolist() == pytest.approx([1.0, 0.0, 1.0, 0.0, 0.5])
    # r = 0.8 > g = 0.4: m = 2 positives with the lowest scores become 0
    labels = torch.tensor([1.0, 1.0, 1.0, 1.0, 0.0])
    scores = torch.tensor([0.2, 0.9, 0.1, 0.7, 0.0])
    c = correct_labels(labels, 0.4, "flip", scores=scores)
    assert c.labels.tolist() == pytest.approx([0.0, 1.0, 0.0, 1.0, 0.0])


def test_random_flips_only_the_over_represented_side():
    labels = torch.tensor([1.0] + [0.0] * 9)
    c = correct_labels(labels, 0.5, "random", generator=torch.Generator().manual_seed(3))
    assert c.labels[0] == 1.0 and float(c.labels.mean()) == pytest.approx(0.5)
    assert int((c.labels[1:] == 1.0).sum()) == 4  # m = 4 whole flips, no fraction


def test_offset_hand_computed():
    c = correct_labels(torch.tensor([1.0, 1.0, 1.0, 0.0]), 0.5, "offset")
    assert c.labels.tolist() == [1.0, 1.0, 1.0, 0.0]
    assert c.offset == pytest.approx(math.log(3.0))  # logit(0.75) - logit(0.5)
    assert correct_labels(torch.tensor([0.0, 0.0]), 0.5, "offset").offset == -math.inf
    assert correct_labels(torch.tensor([1.0]), 0.5, "offset").offset == math.inf


def test_none_and_equal_shares_keep_labels():
    labels = torch.tensor([1.0, 0.0])
    for rule in CORRECTIONS:
        c = correct_labels(labels, 0.5, rule, scores=torch.zeros(2))
        assert c.labels.tolist() == [1.0, 0.0] and c.offset == 0.0 and c.local_share == 0.5


@pytest.mark.parametrize(
    "kwargs, match",
    [
        (dict(labels=torch.tensor([1.0]), global_share=0.5, rule="bogus"), "correction"),
        (dict(labels=torch.tensor([1.0]), global_share=1.0, rule="soft"), "global_share"),
        (dict(labels=torch.tensor([]), global_share=0.5, rule="soft"), "at least one"),
        (dict(labels=torch.tensor([0.5]), global_share=0.5, rule="soft"), "0/1"),
        (dict(labels=torch.tensor([1.0, 0.0, 0.0]), global_share=0.5, rule="flip"), "scores"),
    ],
)
def test_invalid_arguments(kwargs, match):
    with pytest.raises(ConfigError, match=match):
        correct_labels(**kwargs)
