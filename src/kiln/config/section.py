"""The base of every config section, in a module of its own so option models can share it.

The option models of the catalog entries (``kiln.config.model_options``, ``data_options``) are
sections too, and ``kiln.config.catalogs`` imports them; the schema imports the catalogs. Holding
``Section`` here, below all of them, keeps that chain free of cycles.
"""

from __future__ import annotations

from pydantic import BaseModel, ConfigDict


class Section(BaseModel):
    """Base of every section: unknown keys are errors, assignments are validated."""

    model_config = ConfigDict(extra="forbid", validate_assignment=True)
