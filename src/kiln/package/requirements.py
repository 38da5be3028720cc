"""The serving image's ``requirements.txt``: every distribution an ONNX server imports, pinned to
the version installed here, found by walking their declared requirements with importlib.metadata.

Pinning the whole closure (not only the direct dependencies) makes the image a lock file of this
environment: it serves with the numpy and ONNX Runtime that ``kiln export`` checked parity with.
torch, MLflow and the other training dependencies are not in the closure, and a test keeps them
out. The pins are read for this interpreter's Python version and platform, so the image's base is
the same Python minor version (:func:`kiln.package.dockerfile.base_image`).

>>> "torch" in {line.split("==")[0] for line in serving_pins()}  # doctest: +SKIP
False
"""

from __future__ import annotations

import importlib.metadata

from kiln.errors import KilnError

# What `kiln serve --backend onnx` imports, as the serve-onnx extra in pyproject.toml lists it
# (tests/package check that the two agree). Beside the server's own libraries: kiln's core
# dependencies the serving path imports (numpy, pydantic for the config schema, PyYAML, orjson).
SERVE_ONNX = (
    "fastapi>=0.115", "uvicorn>=0.54", "prometheus-client>=0.20", "python-multipart>=0.0.9",
    "pillow>=10", "orjson>=3.9", "httptools>=0.6", "uvloop>=0.19; sys_platform != 'win32'",
    "onnxruntime>=1.18", "numpy>=1.26", "pydantic>=2.6,<3", "pyyaml>=6.0",
    "typing-extensions>=4.5",
)

# Never in a serving image: a closure that reaches one of them is a bug to fix, not to ship.
TRAINING_ONLY = frozenset({"torch", "mlflow", "mlflow-skinny", "scikit-learn", "pandas", "pyarrow",
                           "tensorboard", "kiln-ml"})


def serving_pins(roots: tuple[str, ...] = SERVE_ONNX) -> list[str]:
    """``name==version`` for each distribution ``roots`` need here, sorted by name."""
    from packaging.requirements import Requirement
    from packaging.utils import canonicalize_name

    pins: dict[str, str] = {}
    pending = [(Requirement(text), "") for text in roots]
    while pending:
        requirement, extra = pending.pop()
        if requirement.marker is not None and not requirement.marker.evaluate({"extra": extra}):
            continue
        name = canonicalize_name(requirement.name)
        seen = name in pins
        if not seen:
            pins[name] = _installed(requirement.name)
        # an extra asked for later still adds its requirements (fastapi[standard] after fastapi)
        for wanted in ("", *sorted(requirement.extras)) if not seen else sorted(requirement.extras):
            for text in importlib.metadata.requires(requirement.name) or ():
                pending.append((Requirement(text), wanted))
    leaked = sorted(TRAINING_ONLY & pins.keys())
    if leaked:
        raise KilnError(f"the serving requirements reach {', '.join(leaked)}, which a serving image "
                        "must not carry; this is a bug in kiln's serve-onnx list, please report it")
    return [f"{name}=={pins[name]}" for name in sorted(pins)]


def _installed(name: str) -> str:
    try:
        return importlib.metadata.version(name)
    except importlib.metadata.PackageNotFoundError:
        raise KilnError(
            f"{name} is not installed here, and kiln package pins what this environment serves with",
            hint="pip install 'kiln-ml[serve-onnx]' (or the serve and export extras), then run "
                 "kiln package again",
        ) from None
