"""Property-based test from the API's own OpenAPI schema: no generated request gets a 5xx.

Schemathesis builds Hypothesis strategies from the live server's ``/openapi.json``: valid
requests (which must answer 200) and invalid ones (which must answer 4xx), a bounded number of each;
``/feedback`` too (its generated request ids are unknown to the log: 404, never a 5xx).
(schemathesis's pytest plugin does not run under pytest 9 yet, so the strategies are driven by
Hypothesis's ``@given`` directly.)
"""

from __future__ import annotations

from typing import Any

import pytest
import schemathesis
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from schemathesis import GenerationMode

from tests.serve.conftest import Server

EXAMPLES = 60


@pytest.mark.slow
def test_no_server_errors_from_the_openapi_schema(onnx_server: Server) -> None:
    schema = schemathesis.openapi.from_url(f"{onnx_server.url}/openapi.json")
    modes: list[Any] = [GenerationMode.POSITIVE, GenerationMode.NEGATIVE]
    cases = st.one_of(*(schema.as_strategy(generation_mode=mode) for mode in modes))
    seen: set[tuple[str, str, int]] = set()

    @given(case=cases)
    @settings(max_examples=EXAMPLES, deadline=None, database=None,
              suppress_health_check=list(HealthCheck))
    def check(case: Any) -> None:
        response = case.call(base_url=onnx_server.url, timeout=10)
        seen.add((case.method, case.path, response.status_code))
        assert response.status_code < 500, (
            f"{case.method} {case.path} -> {response.status_code}: {response.text[:500]}")

    check()
    assert ("POST", "/predict", 200) in seen, seen  # valid bodies were generated and accepted
    assert any(p == "/predict" and 400 <= s < 500 for _, p, s in seen), seen
    assert any(p == "/feedback" and 400 <= s < 500 for _, p, s in seen), seen  # the prediction log is on
