"""Batch prediction over files of any size, resumable, with the server's own preprocessing.

``predict_file`` is ``kiln predict``; ``predict`` (exported as ``kiln.predict``) runs the same
readers and model in memory. The package is not named ``kiln.predict``: that name is the function.
"""

from __future__ import annotations

from kiln.batch_predict.api import predict
from kiln.batch_predict.job import PredictOptions, PredictReport, predict_file

__all__ = ["PredictOptions", "PredictReport", "predict", "predict_file"]
