"""``kiln package``: a container build context serving a model with ONNX Runtime, without torch.

See :mod:`kiln.package.context` for what the folder holds and why.
"""

from kiln.package.context import PackageResult, package_model
from kiln.package.requirements import SERVE_ONNX, serving_pins

__all__ = ["SERVE_ONNX", "PackageResult", "package_model", "serving_pins"]
