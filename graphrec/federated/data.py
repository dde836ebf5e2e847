"""Small readers for the natural cross-silo / per-subject FL splits in ``shared/data/fl``.

These readers live here (not in :mod:`graphrec.datasets`) until those loaders exist there; they
only read local files and never download.

* :func:`load_uci_heart_per_centre` - UCI Heart Disease, one client per centre (Cleveland,
  Switzerland, VA Long Beach; Hungary is not shipped); CC BY 4.0, Janosi et al. 1988.
* :func:`load_uci_har_labels_per_subject` - UCI HAR subject ids and activity labels (no feature
  matrix), one client per subject: label streams for ODE coordination.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np

from graphrec.datasets._files import locate, open_text
from graphrec.errors import ConfigError, InputFormatError
from graphrec.federated.partition import natural_partition

__all__ = [
    "HEART_CENTRES",
    "HeartDiseaseCentres",
    "load_uci_heart_per_centre",
    "HARLabels",
    "load_uci_har_labels_per_subject",
]

#: centre name -> file under the dataset root
HEART_CENTRES = {
    "cleveland": "processed.cleveland.data",
    "switzerland": "processed.switzerland.data",
    "va": "processed.va.data",
}


@dataclass
class HeartDiseaseCentres:
    """13 features (``nan`` = missing, ``?`` in the files), target 0..4, one client per centre."""

    x: np.ndarray  #: float64 [n, 13]
    y: np.ndarray  #: int64 [n], 0 = no disease, 1..4 = severity
    centre: np.ndarray  #: int64 [n], index into ``centres``
    centres: list[str]
    parts: list[np.ndarray]  #: sample indices per centre


def load_uci_heart_per_centre(root: str | Path) -> HeartDiseaseCentres:
    """Read ``processed.{cleveland,switzerland,va}.data`` (14 comma-separated columns)."""
    files = locate("uci-heart-disease", root, list(HEART_CENTRES.values()))
    rows, target, centre = [], [], []
    for c, (name, file) in enumerate(HEART_CENTRES.items()):
        path = files[file]
        with open_text(path) as fh:
            for lineno, line in enumerate(fh, 1):
                if not line.strip():
                    continue
                fields = line.strip().split(",")
                try:
                    if len(fields) != 14:
                        raise ConfigError
                    values = [np.nan if f == "?" else float(f) for f in fields]
                except ValueError:
                    raise InputFormatError(
                        f"centre {name}: bad row",
                        path=path,
                        line=lineno,
                        content=line,
                        expected="14 comma-separated numbers or '?'",
                    ) from None
                rows.append(values[:13])
                target.append(int(values[13]))
                centre.append(c)
    centre_arr = np.asarray(centre, dtype=np.int64)
    return HeartDiseaseCentres(
        np.asarray(rows, dtype=np.float64),
        np.asarray(target, dtype=np.int64),
        centre_arr,
        list(HEART_CENTRES),
        natural_partition(centre_arr),
    )


@dataclass
class HARLabels:
    """UCI HAR activity labels (1..6 in the files, stored 0..5) and subjects of one split."""

    y: np.ndarray  #: int64 [n], activity 0..5
    subject: np.ndarray  #: int64 [n], subject id as in the files
    subjects: np.ndarray  #: sorted distinct subject ids; client c is subjects[c]
    parts: list[np.ndarray]  #: window indices per subject, in time order


def load_uci_har_labels_per_subject(root: str | Path, split: str = "train") -> HARLabels:
    """Read ``{split}/y_{split}.txt`` and ``{split}/subject_{split}.txt`` under ``root``."""
    if split not in ("train", "test"):
        raise ConfigError(f"split must be 'train' or 'test', got {split!r}")
    names = [f"{split}/y_{split}.txt", f"{split}/subject_{split}.txt"]
    files = locate("uci-har-labels", root, names)
    columns = []
    for name in names:
        with open_text(files[name]) as fh:
            try:
                columns.append(np.array([int(t) for t in fh.read().split()], dtype=np.int64))
            except ValueError:
                raise InputFormatError(
                    "non-integer entry", path=files[name], expected="one integer per line"
                ) from None
    y, subject = columns
    if y.size != subject.size:
        raise InputFormatError(
            f"{y.size} labels but {subject.size} subject ids", path=files[names[1]]
        )
    return HARLabels(y - 1, subject, np.unique(subject), natural_partition(subject))
