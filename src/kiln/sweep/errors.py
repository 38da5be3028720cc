"""The sweep's own error (kept here until it joins the others in ``kiln.errors``)."""

from __future__ import annotations

from kiln.errors import KilnError


class SweepError(KilnError):
    """A sweep cannot start or go on: the study, its storage or its workers are not usable."""
