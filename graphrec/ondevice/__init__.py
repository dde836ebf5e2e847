"""On-device personalization: per-user fine-tuning of a cloud CTR model, label correction.

* :mod:`graphrec.ondevice.correction` - label correction rules (soft, flip, random, offset)
  that make a device's mean label equal the global share.
* :mod:`graphrec.ondevice.protocol` - per-user fine-tuning vectorised across users, GAUC and
  the other per-user metrics, gains bucketed by drift.
"""

from graphrec.ondevice.correction import CORRECTIONS, CorrectedLabels, correct_labels
from graphrec.ondevice.protocol import (
    LAYERS,
    UserScores,
    drift_buckets,
    finetune_users,
    per_user_auc,
    user_metrics,
)

__all__ = [
    "CORRECTIONS",
    "CorrectedLabels",
    "LAYERS",
    "UserScores",
    "correct_labels",
    "drift_buckets",
    "finetune_users",
    "per_user_auc",
    "user_metrics",
]
