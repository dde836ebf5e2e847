"""ID alignment by ECDH private set intersection (openmined-psi, the ``vfl`` extra).

Without the extra the module is skipped, except under CI, where it is a failure.
"""

from __future__ import annotations

import os
import sys

import numpy as np
import pytest

try:
    import private_set_intersection.python  # noqa: F401
except ImportError:
    if os.environ.get("CI"):
        raise
    pytest.skip("openmined-psi is not installed (pip install -e '.[vfl]')", allow_module_level=True)

from graphrec.errors import ConfigError, MissingExtraError
from graphrec.federated.vertical import MessageLog, align_ids


@pytest.mark.parametrize("seed", [0, 1, 2])
def test_exact_intersection_and_rows(seed):
    rng = np.random.default_rng(seed)
    universe = 400
    ids = {
        "bank": rng.choice(universe, 150, replace=False),
        "shop": rng.choice(universe, 220, replace=False),
        "app": rng.choice(universe, 300, replace=False),
    }
    log = MessageLog(keep_payloads=True)
    al = align_ids(ids, "shop", log=log)
    true = set(ids["bank"]) & set(ids["shop"]) & set(ids["app"])
    assert sorted(al.ids, key=int) == sorted(map(str, true), key=int)
    # aligned order = the label owner's row order
    assert al.rows["shop"].tolist() == sorted(al.rows["shop"].tolist())
    for party, local in ids.items():
        assert [str(x) for x in local[al.rows[party]]] == list(al.ids)
    # the ids themselves only travel as the final intersection, to each party once
    aligned = [m for m in log if m.kind == "aligned_ids"]
    assert [(m.sender, m.receiver) for m in aligned] == [("shop", "bank"), ("shop", "app")]
    for m in aligned:
        assert {b.decode() for b in m.payload} == set(map(str, true))
    kinds = {m.kind for m in log}
    assert kinds == {"psi_size", "psi_setup", "psi_request", "psi_response", "aligned_ids"}
    assert log.total_bytes == sum(m.nbytes for m in log) > 0


def test_no_plain_id_in_psi_messages():
    ids = {
        "bank": [f"customer-{i:06d}" for i in range(0, 60)],
        "shop": [f"customer-{i:06d}" for i in range(40, 100)],
    }
    log = MessageLog(keep_payloads=True)
    al = align_ids(ids, "bank", log=log)
    assert al.ids == tuple(f"customer-{i:06d}" for i in range(40, 60))
    for m in log:
        if m.kind.startswith("psi_") and m.kind != "psi_size":
            wire = m.payload.SerializeToString()
            assert not any(k.encode() in wire for k in ids["bank"] + ids["shop"])


def test_string_and_int_ids_compare_as_strings():
    al = align_ids({"a": [3, 1, 2], "b": ["2", "3", "9"]}, "a")
    assert al.ids == ("3", "2") and al.rows["a"].tolist() == [0, 2]
    assert al.rows["b"].tolist() == [1, 0] and len(al) == 2


def test_empty_overlap_names_the_party():
    with pytest.raises(ConfigError, match=r"party_ids\['shop'\] shares no id with the label owner"):
        align_ids({"bank": [1, 2, 3], "shop": [4, 5]}, "bank")
    # the chain: app overlaps bank but not bank & shop
    with pytest.raises(ConfigError, match=r"party_ids\['app'\] shares no id with the ids 'bank'"):
        align_ids({"bank": [1, 2, 3], "shop": [2, 3], "app": [1]}, "bank")


def test_duplicates_and_bad_arguments():
    with pytest.raises(ConfigError, match=r"party_ids\['shop'\]: id '5' appears 2 times"):
        align_ids({"bank": [1, 5], "shop": [5, 7, 5]}, "bank")
    with pytest.raises(ConfigError, match="label_owner must be one of"):
        align_ids({"bank": [1], "shop": [1]}, "server")
    with pytest.raises(ConfigError, match=r"party_ids\['bank'\] is empty"):
        align_ids({"bank": [], "shop": [1]}, "bank")


def test_missing_extra_is_one_line(monkeypatch):
    monkeypatch.setitem(sys.modules, "private_set_intersection.python", None)
    with pytest.raises(MissingExtraError, match=r"needs the 'vfl' extra") as info:
        align_ids({"bank": [1], "shop": [1]}, "bank")
    assert "\n" not in str(info.value)
