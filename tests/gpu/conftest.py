"""The one exception to "no test skips in CI": tests marked ``gpu`` (and only those, and only in
tests/gpu/) skip when no CUDA device is present, with the exact reason ``NO_CUDA``. CI's machines
have no GPU, so these tests run where one is: a developer's or a GPU runner, which sets
``KILN_REQUIRE_GPU=1`` to make the missing device a failure instead of a skip.

The rule cannot hide other skips: the skip is decided here from ``torch.cuda.is_available()``
alone, for items carrying the marker; test_skip_rule.py checks that the marker lives only here and
that every test here carries it.
"""

from __future__ import annotations

import os

import pytest

NO_CUDA = "no CUDA device: tests/gpu run on a CUDA machine (KILN_REQUIRE_GPU=1 makes this a failure)"


@pytest.fixture(autouse=True)
def _needs_cuda(request: pytest.FixtureRequest) -> None:
    if request.node.get_closest_marker("gpu") is None:
        return
    import torch

    if torch.cuda.is_available():
        return
    if os.environ.get("KILN_REQUIRE_GPU") == "1":
        pytest.fail("KILN_REQUIRE_GPU=1 but no CUDA device is present")
    pytest.skip(NO_CUDA)
