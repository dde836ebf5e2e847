"""Fixtures of the federated tests."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import pytest

from graphrec.federated.experiment import StreamData


@pytest.fixture
def split_streams() -> Callable[[Any, int], StreamData]:
    """``split_streams(data, stream)``: synthetic ``data`` (``x``, ``y``, ``parts``) as the
    :class:`StreamData` of :func:`graphrec.federated.experiment.stream_task`: each device streams
    its first ``stream`` samples; the rest of every device is the central test set."""

    def split(data: Any, stream: int) -> StreamData:
        parts = [p[:stream] for p in data.parts]
        test = np.concatenate([p[stream:] for p in data.parts])
        return StreamData(data.x, data.y, parts, test, "")

    return split
