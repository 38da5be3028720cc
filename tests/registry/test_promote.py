"""Gated promotion and its audit trail, against a real SQLite store."""

from __future__ import annotations

import json
from datetime import datetime, timedelta, timezone

import pytest
from mlflow import MlflowClient

from kiln.registry import GateFailed, audit_log, holder_at, promote, register_run
from kiln.registry.client import version_by_alias
from tests.registry.conftest import FAILING_GATE, NOLOAD, PASSING_GATE, Store

pytestmark = pytest.mark.filterwarnings(NOLOAD)


def test_promote_with_a_passing_gate_moves_the_alias(store: Store) -> None:
    version = register_run(store.baseline.run_dir, "promo-pass").version
    result = promote("promo-pass", version, "production", [PASSING_GATE, "val_loss < 100"], uri=store.uri)
    assert result.version == version and result.previous_version is None
    assert [g.passed for g in result.gates] == [True, True]
    assert result.gates[0].measured == store.baseline.test_metrics["test_accuracy"]
    assert result.gates[0].margin == pytest.approx(store.baseline.test_metrics["test_accuracy"] - 0.5)
    assert result.metrics_source.endswith("summary.json")
    client = MlflowClient(store.uri)
    assert int(version_by_alias(client, "promo-pass", "production").version) == version


def test_promote_refuses_a_failing_gate_and_leaves_the_alias_alone(store: Store) -> None:
    first = register_run(store.baseline.run_dir, "promo-fail", alias="production").version
    second = register_run(store.wider.run_dir, "promo-fail").version
    with pytest.raises(GateFailed) as caught:
        promote("promo-fail", second, "production", [FAILING_GATE, PASSING_GATE], uri=store.uri)
    failed = caught.value
    assert [r.passed for r in failed.results] == [False, True]
    measured = store.wider.test_metrics["test_accuracy"]
    assert failed.results[0].margin == pytest.approx(measured - 0.999)
    assert "1 of 2 gates failed" in str(failed) and f"{FAILING_GATE}: measured" in str(failed)
    assert failed.version == second
    client = MlflowClient(store.uri)
    assert int(version_by_alias(client, "promo-fail", "production").version) == first
    refused = audit_log("promo-fail", uri=store.uri)[-1]
    assert refused.event == "refused" and refused.version == second and refused.previous_version == first


def test_an_unknown_metric_fails_the_gate_naming_the_known_ones(store: Store) -> None:
    version = register_run(store.baseline.run_dir, "promo-typo").version
    with pytest.raises(GateFailed, match=r"'test_acuracy' was not measured\. Did you mean 'test_accuracy'\? Known: .*val_loss"):
        promote("promo-typo", version, "production", ["test_acuracy>=0.5"], uri=store.uri)


def test_every_promotion_is_audited_with_the_previous_holder(store: Store) -> None:
    """Two promotions: the second records the first as the previous holder of the alias, and
    "which version was in production at time T" is answered from the trail."""
    v1 = register_run(store.baseline.run_dir, "audited").version
    v2 = register_run(store.wider.run_dir, "audited").version
    first = promote("audited", v1, "production", [PASSING_GATE], uri=store.uri)
    second = promote("audited", v2, "production", uri=store.uri)
    assert (first.previous_version, second.previous_version) == (None, v1)

    trail = audit_log("audited", alias="production", uri=store.uri)
    assert [(e.event, e.version, e.previous_version) for e in trail] == [("promoted", v1, None), ("promoted", v2, v1)]
    assert trail[0].gates[0]["gate"] == PASSING_GATE and trail[0].gates[0]["passed"] is True
    assert trail[1].gates == [] and trail[0].user and trail[0].source == "kiln.registry.promote"
    assert trail[0].at < trail[1].at and datetime.fromisoformat(trail[0].at).tzinfo is not None

    between = datetime.fromisoformat(trail[1].at) - timedelta(microseconds=1)
    holder = holder_at("audited", "production", between, uri=store.uri)
    assert holder is not None and holder.version == v1
    now = holder_at("audited", "production", datetime.now(timezone.utc), uri=store.uri)
    assert now is not None and now.version == v2
    assert holder_at("audited", "production", datetime(2000, 1, 1), uri=store.uri) is None

    # The promoted version carries its own record too.
    tag = MlflowClient(store.uri).get_model_version("audited", str(v2)).tags["kiln.promotion.production"]
    assert json.loads(tag)["previous_version"] == v1


def test_promote_by_alias_reference(store: Store) -> None:
    version = register_run(store.baseline.run_dir, "promo-ref", alias="staging").version
    result = promote("promo-ref", "@staging", "production", uri=store.uri)
    assert result.version == version
