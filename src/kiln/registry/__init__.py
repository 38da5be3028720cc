"""The MLflow model registry: versions, aliases and promotion gated on measured metrics.

Aliases (``production``, ``staging``), not MLflow's deprecated stages. Every alias change, and
every refused one, is recorded with who, when, the gates and the previous holder (see ``audit``).

>>> result = register_run("runs/digits_mlp_20261123_101500", "digits")  # doctest: +SKIP
>>> promote("digits", result.version, "production", ["test_accuracy>=0.98"])  # doctest: +SKIP
>>> kiln.load_model("models:/digits@production")  # doctest: +SKIP

Importing this package does not import MLflow; each function does, when called.
"""

from __future__ import annotations

from kiln.registry.audit import AuditEntry, audit_log, holder_at
from kiln.registry.browse import ModelInfo, VersionInfo, describe, list_models, set_tags, show_model
from kiln.registry.client import get_client, registry_uri
from kiln.registry.promote import GateFailed, PromotionResult, promote
from kiln.registry.register import RegisterResult, register_run
from kiln.registry.resolve import (
    ModelRef,
    ResolvedModel,
    is_model_uri,
    parse_model_uri,
    resolve_model_uri,
)

__all__ = [
    "AuditEntry",
    "GateFailed",
    "ModelInfo",
    "ModelRef",
    "PromotionResult",
    "RegisterResult",
    "ResolvedModel",
    "VersionInfo",
    "audit_log",
    "describe",
    "get_client",
    "holder_at",
    "is_model_uri",
    "list_models",
    "parse_model_uri",
    "promote",
    "register_run",
    "registry_uri",
    "resolve_model_uri",
    "set_tags",
    "show_model",
]
