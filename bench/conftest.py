"""pytest-benchmark suite: `pytest bench --benchmark-only` (not part of the test run).

Every benchmark is parametrised over the available backends and grouped by kernel and
layer shape, so pytest-benchmark prints the backends side by side.
"""

from __future__ import annotations

import pytest

import fastconv

SLOW_ON_NUMPY = "report003"


@pytest.fixture(params=fastconv.available_backends())
def backend(request):
    with fastconv.use_backend(request.param) as selected:
        yield selected
