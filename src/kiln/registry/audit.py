"""The audit trail of aliases: who moved which alias to which version, when, on which gates, and
which version held it before, so "what was in production last Tuesday" has an answer.

Each record is written twice: as a registered-model tag ``kiln.audit.<UTC time>`` (one tag per
record, so concurrent promotions never overwrite each other's history) and, for promotions, as the
tag ``kiln.promotion.<alias>`` on the version promoted. Refused promotions are recorded too.
"""

from __future__ import annotations

import getpass
import json
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime, timezone
from typing import TYPE_CHECKING, Any

from kiln.registry.client import translate_errors
from kiln.runs.gates import GateResult

if TYPE_CHECKING:
    from mlflow import MlflowClient

PREFIX = "kiln.audit."
VERSION_TAG = "kiln.promotion."


@dataclass(frozen=True)
class AuditEntry:
    """One change (or refused change) of an alias."""

    at: str  # UTC, ISO 8601 with microseconds
    event: str  # "promoted" or "refused"
    alias: str
    version: int
    previous_version: int | None
    user: str
    source: str  # what did it: "kiln registry promote", "tracking.register", ...
    gates: list[dict[str, Any]] = field(default_factory=list)

    def to_dict(self) -> dict[str, Any]:
        return {
            "at": self.at, "event": self.event, "alias": self.alias, "version": self.version,
            "previous_version": self.previous_version, "user": self.user, "source": self.source,
            "gates": self.gates,
        }

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> AuditEntry:
        previous = data.get("previous_version")
        return cls(
            str(data["at"]), str(data["event"]), str(data["alias"]), int(data["version"]),
            None if previous is None else int(previous), str(data.get("user", "")),
            str(data.get("source", "")), list(data.get("gates", [])),
        )


def current_user() -> str:
    try:
        return getpass.getuser()
    except (OSError, KeyError):  # no login name in a bare container; the record still says when
        return "unknown"


def record(
    client: MlflowClient,
    name: str,
    event: str,
    alias: str,
    version: int,
    previous_version: int | None,
    gates: Sequence[GateResult],
    source: str,
) -> AuditEntry:
    """Write one audit entry on the registered model (and on the version when it was promoted)."""
    entry = AuditEntry(
        at=datetime.now(timezone.utc).isoformat(timespec="microseconds"),
        event=event, alias=alias, version=version, previous_version=previous_version,
        user=current_user(), source=source, gates=[g.to_dict() for g in gates],
    )
    value = json.dumps(entry.to_dict(), sort_keys=True)
    existing = set((client.get_registered_model(name).tags or {}).keys())
    key = PREFIX + _stamp(entry.at)
    suffix = 1
    while key in existing:  # two records in the same microsecond
        suffix += 1
        key = f"{PREFIX}{_stamp(entry.at)}-{suffix}"
    client.set_registered_model_tag(name, key, value)
    if event == "promoted":
        client.set_model_version_tag(name, str(version), VERSION_TAG + alias, value)
    return entry


@translate_errors
def audit_log(name: str, alias: str | None = None, uri: str | None = None) -> list[AuditEntry]:
    """Every recorded alias change of ``name`` (only ``alias``'s if given), oldest first."""
    from kiln.registry.client import get_client, registered_model

    model = registered_model(get_client(uri), name)
    entries = [
        AuditEntry.from_dict(json.loads(value))
        for key, value in (model.tags or {}).items() if key.startswith(PREFIX)
    ]
    entries.sort(key=lambda e: e.at)
    return [e for e in entries if alias is None or e.alias == alias]


@translate_errors
def holder_at(name: str, alias: str, when: datetime, uri: str | None = None) -> AuditEntry | None:
    """The promotion that put the version holding ``alias`` at time ``when`` in place (None: the
    alias was not held, or was set outside kiln). A naive ``when`` is taken as UTC."""
    moment = when if when.tzinfo is not None else when.replace(tzinfo=timezone.utc)
    holder = None
    for entry in audit_log(name, alias, uri):
        if entry.event == "promoted" and datetime.fromisoformat(entry.at) <= moment:
            holder = entry
    return holder


def _stamp(at: str) -> str:
    # ':' is not allowed in MLflow tag keys, so no isoformat here; this still sorts by time.
    return datetime.fromisoformat(at).strftime("%Y%m%dT%H%M%S.%fZ")
