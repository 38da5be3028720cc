"""The serving image's ``Dockerfile``: a slim Python base, the pinned serving requirements, kiln's
wheel without its dependencies, the model package, a non-root user, a health check on ``/ready``.

The base is the Python minor version this environment runs (the requirements are pinned for it).
The layers go from the least to the most often changed: requirements, kiln, model; a new model on
the same kiln rebuilds only the last. The health check uses Python's urllib (the slim image has
no curl): ``/ready`` answers 503 until the model is loaded and warmed up, and urlopen raises on it.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Mapping

from kiln.package.wheel import KilnInstall

PORT = 8000
USER_ID = 10001  # the runAsUser of deploy/kubernetes.yaml
MODEL_DIR = "/model"


def serve_args(target: str = MODEL_DIR, allow_unverified: bool = False) -> list[str]:
    """The container's command after ``kiln``: the package folder, or the export file it serves
    when that is not the package's default ONNX export (an int8 one, say). ``allow_unverified``:
    the export was packaged with --allow-unverified, so the server must start with it too."""
    flag = ["--allow-unverified"] if allow_unverified else []
    return ["serve", target, "--host", "0.0.0.0", "--port", str(PORT), "--backend", "onnx", *flag]


def base_image() -> str:
    return f"python:{sys.version_info.major}.{sys.version_info.minor}-slim"


def dockerfile(labels: Mapping[str, str], kiln: KilnInstall, title: str, args: list[str]) -> str:
    """The Dockerfile text; ``kiln``: the wheel in the context, or the release, to install."""
    label_lines = " \\\n      ".join(f"{key}={json.dumps(value)}" for key, value in labels.items())
    copy_wheels = "COPY wheels/ /tmp/kiln/wheels/\n" if kiln.wheel else ""
    target = f"/tmp/kiln/{kiln.wheel}" if kiln.wheel else kiln.pip_target
    health = ("import urllib.request; "
              f"urllib.request.urlopen('http://127.0.0.1:{PORT}/ready', timeout=3)")
    return f"""\
# syntax=docker/dockerfile:1
# {title}: kiln serve on ONNX Runtime. Written by kiln package; see README.md in this folder.
# No torch, no MLflow: requirements.txt pins the serving dependencies only, and kiln is
# installed with --no-deps (its declared dependencies include the training stack).
FROM {base_image()}

LABEL {label_lines}

ENV PYTHONDONTWRITEBYTECODE=1 \\
    PYTHONUNBUFFERED=1 \\
    PIP_NO_CACHE_DIR=1 \\
    PIP_DISABLE_PIP_VERSION_CHECK=1

COPY requirements.txt /tmp/kiln/requirements.txt
RUN pip install -r /tmp/kiln/requirements.txt
{copy_wheels}RUN pip install --no-deps {target} && rm -rf /tmp/kiln \\
    && useradd --uid {USER_ID} --no-create-home --shell /usr/sbin/nologin kiln

# owned by root and read-only to the server, which checks the export's sha256; it writes its
# state (the prediction log) into serve_state/ beside the package, the one folder it owns
COPY model/ {MODEL_DIR}/
RUN mkdir -p {MODEL_DIR}/serve_state && chown {USER_ID} {MODEL_DIR}/serve_state

USER {USER_ID}
EXPOSE {PORT}
HEALTHCHECK --interval=10s --timeout=5s --start-period=30s --retries=3 \\
    CMD ["python", "-c", "{health}"]
ENTRYPOINT ["kiln"]
CMD {json.dumps(args)}
"""
