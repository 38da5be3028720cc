"""Gated promotion: point an alias (``production``, ``staging``) at a version only when the metrics
measured on it pass every gate; record who did it, when, on which gates, and what it replaced.

>>> promote("digits", 3, "production", ["test_accuracy>=0.98"])  # doctest: +SKIP
PromotionResult(name='digits', version=3, alias='production', previous_version=2, ...)
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from kiln.errors import RegistryError
from kiln.registry.audit import AuditEntry, record
from kiln.registry.client import check_alias, get_client, translate_errors, version_ref
from kiln.registry.provenance import version_metrics
from kiln.runs.gates import GateResult, all_passed, describe_failures, evaluate_gates, parse_gates

if TYPE_CHECKING:
    from mlflow import MlflowClient
    from mlflow.entities.model_registry import ModelVersion


class GateFailed(RegistryError):
    """A promotion was refused because a gate failed; ``results`` says which, by how much."""

    def __init__(self, name: str, version: int, alias: str, results: Sequence[GateResult], source: str) -> None:
        self.name, self.version, self.alias = name, version, alias
        self.results = list(results)
        super().__init__(
            f"refusing to give version {version} of {name!r} the alias {alias!r}: "
            f"{sum(not r.passed for r in results)} of {len(results)} gates failed "
            f"(metrics from {source})\n{describe_failures(results)}"
        )


@dataclass(frozen=True)
class PromotionResult:
    name: str
    version: int
    alias: str
    previous_version: int | None  # the version that held the alias before (None: nobody)
    gates: tuple[GateResult, ...]
    metrics_source: str  # where the measured metrics were read
    audit: AuditEntry

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name, "version": self.version, "alias": self.alias,
            "previous_version": self.previous_version, "gates": [g.to_dict() for g in self.gates],
            "metrics_source": self.metrics_source, "audit": self.audit.to_dict(),
        }


@translate_errors
def promote(
    name: str,
    version: str | int,
    alias: str,
    require: Sequence[str] = (),
    uri: str | None = None,
    source: str = "kiln.registry.promote",
) -> PromotionResult:
    """Give ``version`` (a number, or ``@other_alias``) of ``name`` the ``alias`` if every gate in
    ``require`` passes; otherwise record the refusal and raise :class:`GateFailed`."""
    gates = parse_gates(require)
    check_alias(alias)
    client = get_client(uri)
    target = version_ref(client, name, version)
    metrics, origin = version_metrics(client, target) if gates else ({}, "no gates required")
    return apply(client, target, alias, evaluate_gates(gates, metrics), origin, source)


def apply(
    client: MlflowClient,
    target: ModelVersion,
    alias: str,
    results: Sequence[GateResult],
    origin: str,
    source: str,
) -> PromotionResult:
    """Set the alias when ``results`` all passed (raise GateFailed otherwise), with an audit record."""
    name, number = target.name, int(target.version)
    previous = current_holder(client, name, alias)
    if not all_passed(results):
        record(client, name, "refused", alias, number, previous, results, source)
        raise GateFailed(name, number, alias, results, origin)
    client.set_registered_model_alias(name, alias, str(number))
    entry = record(client, name, "promoted", alias, number, previous, results, source)
    return PromotionResult(name, number, alias, previous, tuple(results), origin, entry)


def current_holder(client: MlflowClient, name: str, alias: str) -> int | None:
    aliases: dict[str, Any] = dict(client.get_registered_model(name).aliases or {})
    held = aliases.get(alias)
    return None if held is None else int(held)
