"""A synthetic CTR dataset with a planted attribute hierarchy and planted user preferences."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from functools import partial

import numpy as np

from graphrec.errors import ConfigError
from graphrec.io import CTRSchema, CTRTable

__all__ = [
    "SYNTHETIC_CTR_SCHEMA",
    "SYNTHETIC_TREES",
    "SyntheticCTR",
    "impression_tables",
    "synthetic_ctr",
]

#: Column roles of :func:`synthetic_ctr` tables; ``history`` shares the ``item`` vocabulary.
SYNTHETIC_CTR_SCHEMA = CTRSchema(
    label="label",
    categorical=["user", "item", "campaign", "customer", "cate", "brand"],
    sequence={"history": ","},
    shared_vocab={"history": "item"},
)

#: The planted attribute trees, leaves first (as Taobao ads: item -> campaign -> customer,
#: item -> cate, item -> brand); build them with
#: :func:`graphrec.graphs.attribute_tree.tree_from_table`.
SYNTHETIC_TREES = (("item", "campaign", "customer"), ("item", "cate"), ("item", "brand"))

_TYPES = ("campaign", "customer", "cate", "brand")


@dataclass(repr=False)
class SyntheticCTR:
    """Train / validation / test tables of :func:`synthetic_ctr` and the planted truth.

    Attributes:
        train, valid, test: tables encoded with one vocabulary (code = id + 1).
        planted: the attribute type the users' preferences are about.
        preferences: ``int64 [num_users, k]`` preferred values (ids, not codes) per user.
        item_attributes: attribute type -> id per item (``customer`` via the campaign).
    """

    train: CTRTable
    valid: CTRTable
    test: CTRTable
    planted: str
    preferences: np.ndarray
    item_attributes: dict[str, np.ndarray]

    def __repr__(self) -> str:
        return (
            f"SyntheticCTR(planted={self.planted!r}, train={self.train.num_rows}, "
            f"valid={self.valid.num_rows}, test={self.test.num_rows})"
        )


def synthetic_ctr(
    *,
    num_users: int = 300,
    num_items: int = 400,
    num_campaigns: int = 80,
    num_customers: int = 20,
    num_cates: int = 12,
    num_brands: int = 40,
    planted: str = "cate",
    num_preferred: int = 2,
    impressions_per_user: int = 40,
    warmup_clicks: int = 5,
    max_history: int = 20,
    strength: float = 4.0,
    bias: float = -2.0,
    preferred_share: float = 0.35,
    valid_fraction: float = 0.1,
    test_fraction: float = 0.1,
    value_skew: float = 0.0,
    seed: int = 0,
) -> SyntheticCTR:
    """A seeded CTR dataset whose clicks are driven by one attribute type.

    Items have a planted hierarchy: each item belongs to a campaign, each campaign to a
    customer, and each item has a category and a brand (uniformly random, or with
    ``value_skew > 0`` Zipf-like: value ``r`` with probability proportional to
    ``(r + 1) ** -value_skew``, so that vocabularies of up to millions of values still have
    values shared by many items). Each user prefers ``num_preferred`` random values of the
    ``planted`` attribute type (with ``value_skew``: values held by items, drawn in proportion
    to their number of items); an impression of item
    ``v`` by user ``u`` is clicked with probability
    ``sigmoid(bias + strength * [attr(v) in preferred(u)])``. Impressed items are uniform,
    except that a ``preferred_share`` of them is drawn among items with a preferred value.

    Every user first makes ``warmup_clicks`` clicks on preferred items (not rows), then
    ``impressions_per_user`` impressions in time order; ``history`` holds the user's earlier
    clicks (warm-up included, at most ``max_history``, oldest first). The last
    ``test_fraction`` of a user's impressions (rounded up) are the test set, the
    ``valid_fraction`` before them the validation set, the rest the training set.

    Memory and time grow with the vocabulary sizes only through one value per item and
    campaign and the vocabularies (e.g. 10^6 values per type with ``value_skew=1.1``).

    Args:
        planted: ``"campaign"``, ``"customer"``, ``"cate"`` or ``"brand"``.
        value_skew: 0 for uniform attribute values, else the Zipf exponent (> 0).
        seed: seed of :func:`numpy.random.default_rng`; equal seeds give equal data.
    """
    if planted not in _TYPES:
        raise ConfigError(f"planted must be one of {_TYPES}; got {planted!r}")
    sizes = {"campaign": num_campaigns, "customer": num_customers, "cate": num_cates,
             "brand": num_brands}  # fmt: skip
    if min(num_users, num_items, *sizes.values()) < 1 or impressions_per_user < 3:
        raise ConfigError("every count must be >= 1 and impressions_per_user >= 3")
    if not 1 <= num_preferred < sizes[planted]:
        raise ConfigError(f"num_preferred must be in 1..{sizes[planted] - 1}")
    if value_skew < 0:
        raise ConfigError(f"value_skew must be >= 0; got {value_skew}")
    rng = np.random.default_rng(seed)
    draw = partial(_draw_values, rng, value_skew)
    campaign_customer = draw(num_customers, num_campaigns)
    attrs = {"campaign": draw(num_campaigns, num_items)}
    attrs["customer"] = campaign_customer[attrs["campaign"]]
    attrs["cate"] = draw(num_cates, num_items)
    attrs["brand"] = draw(num_brands, num_items)
    if value_skew:  # values held by items, in proportion to their items
        held, n_held = np.unique(attrs[planted], return_counts=True)
        if len(held) <= num_preferred:
            raise ConfigError(f"num_preferred must be below the {len(held)} {planted} values held")
        prefs = np.stack([rng.choice(held, num_preferred, replace=False, p=n_held / num_items)
                          for _ in range(num_users)])  # fmt: skip
    else:
        prefs = np.stack(
            [rng.choice(sizes[planted], num_preferred, replace=False) for _ in range(num_users)]
        )
    planted_of_item = attrs[planted]

    rows: dict[str, list] = {c: [] for c in ("user", "item", "label", "history", "part")}
    n_test = int(np.ceil(test_fraction * impressions_per_user))
    n_valid = int(np.ceil(valid_fraction * impressions_per_user))
    n_train = impressions_per_user - n_test - n_valid
    if n_train < 1:
        raise ConfigError("valid_fraction + test_fraction leave no training impressions")
    for u in range(num_users):
        liked = np.flatnonzero(np.isin(planted_of_item, prefs[u]))
        if liked.size == 0:
            liked = np.arange(num_items)
        clicks = list(rng.choice(liked, warmup_clicks))
        for t in range(impressions_per_user):
            v = rng.choice(liked) if rng.random() < preferred_share else rng.integers(num_items)
            p = 1.0 / (1.0 + np.exp(-(bias + strength * (planted_of_item[v] in prefs[u]))))
            y = float(rng.random() < p)
            rows["user"].append(u)
            rows["item"].append(int(v))
            rows["label"].append(y)
            rows["history"].append(clicks[-max_history:])
            rows["part"].append(0 if t < n_train else 1 if t < n_train + n_valid else 2)
            if y:
                clicks.append(int(v))
    item = np.array(rows["item"])
    codes = {"user": np.array(rows["user"]) + 1, "item": item + 1}
    codes.update({k: attrs[k][item] + 1 for k in _TYPES})
    count = {"user": num_users, "item": num_items, **sizes}
    table = impression_tables(
        rows, codes, count, max_history, SYNTHETIC_CTR_SCHEMA,
        f"synthetic (planted={planted}, seed={seed})",
    )  # fmt: skip
    return SyntheticCTR(table(0), table(1), table(2), planted, prefs, attrs)


def _draw_values(rng: np.random.Generator, skew: float, n: int, size: int) -> np.ndarray:
    """``size`` values in ``0..n-1``: uniform (``skew`` 0, the original draw) or Zipf-like."""
    if not skew:
        return rng.integers(0, n, size)
    p = np.arange(1, n + 1, dtype=np.float64) ** -skew
    return rng.choice(n, size, p=p / p.sum())


def impression_tables(
    rows: dict[str, list],
    codes: dict[str, np.ndarray],
    count: dict[str, int],
    max_history: int,
    schema: CTRSchema,
    path: str,
) -> Callable[[int], CTRTable]:
    """``table(k)``: the impressions of part ``k`` of a generator's ``rows`` (lists ``label``,
    ``history`` (clicked item indices), ``part``) as a :class:`CTRTable` with the categorical
    ``codes`` (index + 1 per row) over vocabularies of ``count`` values, the histories padded
    to ``max_history``."""
    label = np.array(rows["label"], dtype=np.float32)
    part = np.array(rows["part"])
    lengths = np.array([len(h) for h in rows["history"]], dtype=np.int64)
    history = np.zeros((len(label), max_history), dtype=np.int64)
    for r, h in enumerate(rows["history"]):
        history[r, : len(h)] = np.asarray(h, dtype=np.int64) + 1
    vocab = {c: {str(i): i + 1 for i in range(n)} for c, n in count.items()}

    def table(k: int) -> CTRTable:
        sel = part == k
        return CTRTable(
            labels=label[sel],
            categorical={c: v[sel].astype(np.int64) for c, v in codes.items()},
            numeric={},
            sequence={"history": history[sel]},
            sequence_lengths={"history": lengths[sel]},
            vocab=vocab,
            schema=schema,
            path=path,
        )

    return table
