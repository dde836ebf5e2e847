"""The synthetic drift data set: structure, seeding and the planted drift."""

import numpy as np
import pytest

from graphrec.errors import ConfigError
from graphrec.ondevice.synthetic import drift_ctr


def shares(table):
    users = table.categorical["user"]
    return np.array([table.labels[users == u].mean() for u in np.unique(users)])


def test_tables_and_seeding():
    data = drift_ctr(num_users=30, cloud_per_user=10, local_per_user=6, test_per_user=8, seed=3)
    s = data.ctr.split
    assert (s.train.num_rows, s.valid.num_rows) == (30 * 9, 30 * 1)
    assert (data.local.num_rows, data.test.num_rows) == (30 * 6, 30 * 8)
    assert data.global_share == pytest.approx(s.train.labels.mean())
    again = drift_ctr(num_users=30, cloud_per_user=10, local_per_user=6, test_per_user=8, seed=3)
    np.testing.assert_array_equal(again.test.labels, data.test.labels)
    np.testing.assert_array_equal(again.local.categorical["item"], data.local.categorical["item"])


def test_revisit_reshows_local_items():
    data = drift_ctr(num_users=20, revisit=1.0, seed=0)
    for u in range(1, 21):
        local = data.local.categorical["item"][data.local.categorical["user"] == u]
        test = data.test.categorical["item"][data.test.categorical["user"] == u]
        assert np.isin(test, local).all()


def test_drift_spreads_local_shares():
    drifted = shares(drift_ctr(num_users=200, local_per_user=40, seed=0).local)
    flat = shares(drift_ctr(num_users=200, local_per_user=40, propensity_std=0.0, seed=0).local)
    assert drifted.std() > 1.5 * flat.std()


@pytest.mark.parametrize(
    "kwargs", [dict(num_cates=1), dict(cloud_per_user=1), dict(test_per_user=0), dict(revisit=2.0)]
)
def test_invalid_arguments(kwargs):
    with pytest.raises(ConfigError):
        drift_ctr(**kwargs)
