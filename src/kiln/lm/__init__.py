"""The language-model track: sampling text from a trained character-level model.

Data, model and task live with their families (``kiln.data.text``, ``kiln.models.transformer``,
``kiln.tasks.language_modeling``); this package holds what only language models do.
"""

from kiln.lm.generate import generate, generate_text, sample_from_package

__all__ = ["generate", "generate_text", "sample_from_package"]
