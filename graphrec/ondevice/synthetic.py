"""A synthetic on-device data set in which CTR drift harms naive fine-tuning, by design.

Mechanism. Fine-tuning with log loss moves a user's mean prediction from the cloud's (about
the global share :math:`g`) towards the local share :math:`r_u`. The step on a local sample's
logit is proportional to its residual :math:`y_i - p_i`; when :math:`r_u \\ne g` the residuals
share one sign, and the parameters of every local sample move the same way: with all layers
tuned, the embeddings of the items the user saw locally all go up (:math:`r_u > g`) or down
(:math:`r_u < g`) by an amount unrelated to the user's preference. A per-user constant shift
leaves per-user ranking unchanged, but this one is not constant when the user's test items
are a mix of items seen locally (shifted, as often as they were seen) and items not seen (not
shifted), so it reorders the test items by exposure instead of preference. Label correction
(mean label :math:`g`) removes the common part of the residuals and keeps their within-user
contrast.

Generation (:func:`drift_ctr`). Items have a category and a quality :math:`q_i`; user
:math:`u` has category preferences :math:`\\pi_{u,c}` and, in the local and test periods
only, a propensity :math:`\\beta_u` (the drift: the cloud period has none, so the cloud model
predicts about :math:`g`). A click has probability
:math:`\\sigma(\\beta_u + \\pi_{u,c(i)} + q_i)`. Cloud and local impressions are uniform over
items; a test impression is, with probability ``revisit``, one of the user's local items
drawn again (repeats included, so local items reappear with different multiplicities), else
uniform. ``history`` holds the user's earlier clicks.
"""

from __future__ import annotations

import numpy as np

from graphrec.datasets.synthetic_ctr import impression_tables
from graphrec.errors import ConfigError
from graphrec.io import CTRSchema
from graphrec.models.ctr.data import CTRSplit
from graphrec.models.ctr.defaults import TrainRecipe
from graphrec.models.ctr.experiment import CTRDataset
from graphrec.models.ctr.features import CTRFeatures
from graphrec.ondevice.experiment import OnDeviceData

__all__ = ["DRIFT_CTR_SCHEMA", "DRIFT_RECIPE", "drift_ctr"]

#: The cloud model's training recipe on :func:`drift_ctr` data.
DRIFT_RECIPE = TrainRecipe(epochs=20, batch_size=256, lr=2e-3, patience=3)

#: Column roles of :func:`drift_ctr` tables; ``history`` shares the ``item`` vocabulary.
DRIFT_CTR_SCHEMA = CTRSchema(
    label="label",
    categorical=["user", "item", "cate"],
    sequence={"history": ","},
    shared_vocab={"history": "item"},
)


def drift_ctr(
    *,
    num_users: int = 400,
    num_items: int = 200,
    num_cates: int = 6,
    cloud_per_user: int = 60,
    local_per_user: int = 20,
    test_per_user: int = 20,
    preference_std: float = 1.5,
    propensity_std: float = 2.0,
    revisit: float = 0.5,
    max_history: int = 20,
    seed: int = 0,
) -> OnDeviceData:
    """The drift data set (module docstring) as :class:`~graphrec.ondevice.OnDeviceData`.

    The cloud trains on the first 90% of each user's cloud-period impressions and stops early
    on the rest; every device fine-tunes on its ``local_per_user`` impressions and is tested on
    the next ``test_per_user``.

    Args:
        preference_std: standard deviation of :math:`\\pi_{u,c}`.
        propensity_std: standard deviation of the drift :math:`\\beta_u`.
        revisit: probability that a test impression re-shows a local item.
        seed: seed of :func:`numpy.random.default_rng`; equal seeds give equal data.

    Raises:
        ConfigError: a count below its minimum or ``revisit`` outside ``[0, 1]``.
    """
    if min(num_users, num_items, max_history) < 1 or num_cates < 2:
        raise ConfigError("num_users, num_items and max_history must be >= 1, num_cates >= 2")
    if cloud_per_user < 2 or min(local_per_user, test_per_user) < 1:
        raise ConfigError("cloud_per_user must be >= 2, local_per_user and test_per_user >= 1")
    if not 0.0 <= revisit <= 1.0:
        raise ConfigError(f"revisit must be in [0, 1]; got {revisit}")
    rng = np.random.default_rng(seed)
    cate = rng.integers(0, num_cates, num_items)
    quality = rng.normal(0.0, 0.5, num_items)
    prefs = rng.normal(0.0, preference_std, (num_users, num_cates))
    beta = rng.normal(0.0, propensity_std, num_users)
    n_valid = max(1, cloud_per_user // 10)
    periods = [(0, cloud_per_user - n_valid), (1, n_valid), (2, local_per_user),
               (3, test_per_user)]  # fmt: skip
    rows: dict[str, list] = {c: [] for c in ("user", "item", "label", "history", "part")}
    for u in range(num_users):
        clicks: list[int] = []
        local_items: list[int] = []
        for part, count in periods:
            drift = 0.0 if part < 2 else beta[u]
            for _ in range(count):
                if part == 3 and rng.random() < revisit:
                    v = int(rng.choice(local_items))
                else:
                    v = int(rng.integers(num_items))
                p = 1.0 / (1.0 + np.exp(-(drift + prefs[u, cate[v]] + quality[v])))
                y = float(rng.random() < p)
                rows["user"].append(u)
                rows["item"].append(v)
                rows["label"].append(y)
                rows["history"].append(clicks[-max_history:])
                rows["part"].append(part)
                if y:
                    clicks.append(v)
                if part == 2:
                    local_items.append(v)
    item = np.array(rows["item"])
    codes = {"user": np.array(rows["user"]) + 1, "item": item + 1, "cate": cate[item] + 1}
    count = {"user": num_users, "item": num_items, "cate": num_cates}
    table = impression_tables(
        rows, codes, count, max_history, DRIFT_CTR_SCHEMA, f"synthetic drift (seed={seed})"
    )
    split = CTRSplit(table(0), table(1), table(3))
    ctr = CTRDataset("synthetic", split, CTRFeatures.from_table(split.train), None,
                     "item", "user", "history")  # fmt: skip
    return OnDeviceData(ctr, table(2), DRIFT_RECIPE)
