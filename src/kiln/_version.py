"""kiln's version, in a module of its own: any layer may record it (environment.json, model.json,
checkpoint manifests) without importing the ``kiln`` facade, whose public names reach up to
``kiln.train``."""

from __future__ import annotations

__version__ = "0.1.0"
