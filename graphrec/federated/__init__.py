"""Federated learning on the device-cloud graph: partitioners, an in-process simulator,
aggregation strategies (FedAvg, FedProx, involved-participant averaging, FedSubAvg) and ODE
sample valuation with storage-limited streams and the selection baselines.

Papers: FedSubAvg (arXiv 2109.07704, "Federated Submodel Optimization for Hot and Cold Data
Features", NeurIPS 2022) and ODE (Gong et al., WWW 2023). The device-cloud graph itself is
:class:`graphrec.graphs.device_cloud.DeviceCloudGraph`. Vertical FL (parties holding different
features of the same ids) is :mod:`graphrec.federated.vertical`, on
:class:`graphrec.graphs.PartyGraph`.
"""

from graphrec.federated.ode import (
    GlobalGradientEstimator,
    LabelAssignment,
    LocalGradientEstimator,
    ValueBuffer,
    coordinate_labels,
    global_gradient,
    last_layers,
    per_sample_gradients,
    per_sample_losses,
    sample_values,
)
from graphrec.federated.partition import (
    SyntheticFederated,
    amazon_per_user,
    dirichlet_label_skew,
    label_shards,
    movielens_per_user,
    natural_partition,
    synthetic_leaf,
)
from graphrec.federated.simulator import FederatedTask, LocalConfig, Simulator
from graphrec.federated.strategies import (
    ClientUpdate,
    FedAvg,
    FedProx,
    FedSubAvg,
    InvolvedAveraging,
    RowDelta,
    Strategy,
)
from graphrec.federated.stream import (
    SELECTORS,
    ODEAggregation,
    StreamDevice,
    StreamTask,
    final_value,
    make_store,
    ode_strategy,
    rounds_to_reach,
    speedup,
    stream_simulator,
)
from graphrec.federated.tasks import (
    CTRModelTask,
    EmbeddingCTRTask,
    SoftmaxRegressionTask,
    TinyCTR,
)

__all__ = [
    "SELECTORS",
    "ODEAggregation",
    "StreamTask",
    "final_value",
    "make_store",
    "ode_strategy",
    "per_sample_losses",
    "rounds_to_reach",
    "speedup",
    "stream_simulator",
    "CTRModelTask",
    "ClientUpdate",
    "EmbeddingCTRTask",
    "FedAvg",
    "FedProx",
    "FedSubAvg",
    "FederatedTask",
    "GlobalGradientEstimator",
    "InvolvedAveraging",
    "LabelAssignment",
    "LocalConfig",
    "LocalGradientEstimator",
    "RowDelta",
    "Simulator",
    "SoftmaxRegressionTask",
    "StreamDevice",
    "Strategy",
    "SyntheticFederated",
    "TinyCTR",
    "ValueBuffer",
    "amazon_per_user",
    "coordinate_labels",
    "dirichlet_label_skew",
    "global_gradient",
    "label_shards",
    "last_layers",
    "movielens_per_user",
    "natural_partition",
    "per_sample_gradients",
    "sample_values",
    "synthetic_leaf",
]
