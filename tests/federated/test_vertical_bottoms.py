"""EmbeddingBottom: id and dense columns through the CTR feature embedding, then an MLP."""

from __future__ import annotations

import pytest
import torch

from graphrec.errors import ConfigError
from graphrec.federated.vertical import EmbeddingBottom
from graphrec.models.ctr.features import CTRFeatures, FeatureSpec


def test_forward_equals_table_rows_and_scaled_dense_vector():
    torch.manual_seed(0)
    specs = [FeatureSpec("uid", "sparse", "uid", 5), FeatureSpec("age", "dense")]
    bottom = EmbeddingBottom(CTRFeatures(specs, [30.0], [10.0]), 3, (4,), 2)
    x = torch.tensor([[2.0, 40.0], [0.0, 30.0]])
    emb = bottom.embedding
    fields = torch.stack(
        [
            torch.cat([emb.table("uid").weight[2], 1.0 * emb.dense_weight[0]]),
            torch.cat([emb.table("uid").weight[0], 0.0 * emb.dense_weight[0]]),
        ]
    )
    assert torch.allclose(bottom(x), bottom.mlp(fields), atol=1e-7)
    assert bottom(x).shape == (2, 2)
    before = bottom(x).detach().clone()
    bottom.reset_parameters()
    assert not torch.equal(before, bottom(x))


def test_sequence_features_are_refused():
    specs = [FeatureSpec("hist", "sequence", "item", 5)]
    with pytest.raises(ConfigError, match="sparse or dense"):
        EmbeddingBottom(CTRFeatures(specs), 3, (), 2)
