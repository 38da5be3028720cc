"""Serve a trained model over HTTP: FastAPI + uvicorn, Prometheus metrics, strict input checks.

``create_app(run_dir | "models:/NAME@ALIAS" | export_path)`` builds the app; ``kiln serve`` runs
it. Needs the ``serve`` extra (``pip install 'kiln-ml[serve]'``); names are imported on first
use, so importing this package costs nothing.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from kiln._lazy import lazy_exports

if TYPE_CHECKING:
    from kiln.serve.app import create_app
    from kiln.serve.model import ModelSource, ServedModel, load_served_model, prepare_model

_PUBLIC = {
    "create_app": "kiln.serve.app",
    "ModelSource": "kiln.serve.model",
    "ServedModel": "kiln.serve.model",
    "load_served_model": "kiln.serve.model",
    "prepare_model": "kiln.serve.model",
}

__all__ = ["ModelSource", "ServedModel", "create_app", "load_served_model", "prepare_model"]


__getattr__, __dir__ = lazy_exports(__name__, _PUBLIC, __all__)
