"""The build context's README.md: build, run, check and deploy the image, in that order."""

from __future__ import annotations

import json

from kiln.package.dockerfile import MODEL_DIR, PORT, USER_ID, base_image
from kiln.package.wheel import KilnInstall

README = """\
# {title}: a serving image

Written by `kiln package` (kiln {version}). The image runs `kiln serve` on ONNX Runtime: no torch,
no MLflow, no training dependencies. Base `{base}`, user {uid} (not root), port {port},
`HEALTHCHECK` on `/ready`; `docker inspect` shows the model's name, version, run and git commit
in its labels.

```console
$ docker build -t {image} .      # podman build works the same
$ docker run --rm -p {port}:{port} {image}
$ curl -s localhost:{port}/ready
$ curl -s localhost:{port}/metadata
$ curl -s -X POST localhost:{port}/predict -H 'content-type: application/json' \\
    -d '{{"instances": [...]}}'
```

The container runs `kiln {args}`
(the same in `deploy/kubernetes.yaml`); the server refuses to start if the export no longer
matches its parity record in `model/models/exports.json`.

## What is in this folder

- `Dockerfile`: the image (see the comments in it).
- `requirements.txt`: the serving dependencies, pinned to the versions kiln package found
  installed, with everything they need: the image installs exactly these.
- {kiln_line}
- `model/models/`: `model.json`, the ONNX export and its parity record, byte for byte.
- `deploy/kubernetes.yaml`: a Deployment (readiness on `/ready`, liveness on `/health`,
  Prometheus scrape annotations) and a Service. Push the image and set its `image:` first.

## Without a container

The same install in a virtual environment (this is how kiln's own tests check this folder):

```console
$ python -m venv serve-env
$ serve-env/bin/pip install -r requirements.txt
$ serve-env/bin/pip install --no-deps {kiln_target}
$ serve-env/bin/kiln {local_args}
```

`pip install 'kiln-ml[serve-onnx]'` installs the same serving libraries, but kiln's core
dependencies (torch, MLflow) come with it: an extra only adds requirements. `--no-deps`, as above,
is the torch-free install.
"""


def readme(title: str, image: str, kiln: KilnInstall, args: list[str]) -> str:
    if kiln.wheel:
        kiln_line = (f"`{kiln.wheel}`: the kiln that wrote this folder, as a wheel, installed with "
                     "`--no-deps` (its declared dependencies include torch and MLflow).")
    else:
        kiln_line = (f"kiln itself: `{kiln.pip_target}` from the package index, installed with "
                     "`--no-deps` (its declared dependencies include torch and MLflow).")
    return README.format(
        title=title, version=kiln.version, base=base_image(), uid=USER_ID, port=PORT, image=image,
        args=" ".join(args), kiln_line=kiln_line,
        kiln_target=kiln.wheel or json.dumps(kiln.pip_target),
        local_args=" ".join(a.replace(MODEL_DIR, "model", 1) if a.startswith(MODEL_DIR) else a
                            for a in args if a not in ("--host", "0.0.0.0")),
    )
