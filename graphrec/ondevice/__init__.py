"""On-device personalization: per-user fine-tuning of a cloud CTR model, label correction, CoDA.

* :mod:`graphrec.ondevice.coda` - CoDA: cloud matching of similar samples, an on-device
  sample classifier, fine-tuning on local plus selected samples.
* :mod:`graphrec.ondevice.correction` - label correction rules (soft, flip, random, offset)
  that make a device's mean label equal the global share.
* :mod:`graphrec.ondevice.protocol` - per-user fine-tuning vectorised across users, GAUC and
  the other per-user metrics, gains bucketed by drift.
* :mod:`graphrec.ondevice.experiment` - the named data sets (amazon-users, ml-100k,
  synthetic), the cloud model, one run with its baselines.
* :mod:`graphrec.ondevice.runtime` - the same per-user fine-tuning in MNN (the dense layers,
  one user after the other), with the cloud model exported once.
* :mod:`graphrec.ondevice.synthetic` - a generator in which CTR drift harms naive
  fine-tuning, by design.
"""

from graphrec.ondevice.coda import CODA_DEFAULTS, CodaConfig, run_coda
from graphrec.ondevice.correction import CORRECTIONS, CorrectedLabels, correct_labels
from graphrec.ondevice.experiment import (
    ONDEVICE_DATASETS,
    OnDeviceData,
    load_ondevice_data,
    run_finetune,
    train_cloud,
)
from graphrec.ondevice.protocol import (
    FINETUNE_DEFAULTS,
    LAYERS,
    FineTuneConfig,
    UserScores,
    drift_buckets,
    finetune_users,
    per_user_auc,
    user_metrics,
)
from graphrec.ondevice.runtime import RUNTIMES, MNNRuntime

__all__ = [
    "CODA_DEFAULTS",
    "CORRECTIONS",
    "CodaConfig",
    "CorrectedLabels",
    "FINETUNE_DEFAULTS",
    "FineTuneConfig",
    "LAYERS",
    "MNNRuntime",
    "ONDEVICE_DATASETS",
    "OnDeviceData",
    "RUNTIMES",
    "UserScores",
    "correct_labels",
    "drift_buckets",
    "finetune_users",
    "load_ondevice_data",
    "per_user_auc",
    "run_coda",
    "run_finetune",
    "train_cloud",
    "user_metrics",
]
