"""The other files of a ``kiln init`` project: .gitignore, requirements, the model's tests, a
README and a Kubernetes manifest for the served model."""

from __future__ import annotations

from kiln._version import __version__

GITIGNORE = """\
# kiln: runs, tracking stores and data caches stay out of git
runs/
mlruns/
mlartifacts/
mlflow.db
data/
.kiln-cache/
__pycache__/
.pytest_cache/
"""


def requirements() -> str:
    return (f"# torch first, pinned to a CPU build in CI if you like (see kiln's README)\n"
            f"kiln-ml[export,report]>={__version__}\npytest>=8\n")


TEST_MODEL = '''\
"""Tests of the model code, the way model tests are usually written: a short training run of the
project's own config (one epoch), then checks of what it produced. CI runs them before the real
training, so a broken config or model fails in seconds."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

import kiln

CONFIG = Path(__file__).resolve().parents[1] / "kiln.yaml"
SANITY = "{sanity}"  # far below the gate in kiln.yaml: one epoch only has to beat chance


@pytest.fixture(scope="session")
def run_dir(tmp_path_factory: pytest.TempPathFactory) -> Path:
    config = kiln.load_config(CONFIG, [
        f"run.output_dir={{tmp_path_factory.mktemp('runs')}}", "tracking.backends=[jsonl]",
        "checkpoint.enabled=false", {short},
    ])
    return kiln.Trainer(config, quiet=True).fit().run_dir


def test_config_is_valid() -> None:
    kiln.load_config(CONFIG)


def test_model_takes_the_data_shape_and_gives_one_output_per_class(run_dir: Path) -> None:
    from kiln.models.package import load_package

    package = load_package(run_dir)  # the model and the DataSpec it was trained on
    spec = package.spec
    if spec.task == "language_modeling":
        tokens = torch.zeros(2, 8, dtype=torch.long)
        assert package.model(tokens).shape == (2, 8, spec.num_classes)
    else:
        assert package.model(torch.zeros(4, *spec.input_shape)).shape == (4, spec.output_size)


def test_a_short_run_passes_the_sanity_gate(run_dir: Path) -> None:
    from kiln.cli.main import main

    assert main(["gate", str(run_dir), "--require", SANITY, "--no-measure"]) == 0
'''


def test_model(sanity: str, short: str) -> str:
    return TEST_MODEL.format(sanity=sanity, short=short)


README = """\
# {name}

A kiln project ({description}). Created with `kiln init --template {template}`.

```console
$ pip install -r requirements.txt
{get_data}$ kiln train -c kiln.yaml                 # a run directory under runs/
$ kiln gate runs/<run>                      # the criteria in kiln.yaml's gate.require
$ kiln export runs/<run> --format onnx      # parity-checked ONNX export
$ kiln serve runs/<run>                     # HTTP API on 127.0.0.1:8000
$ python -m pytest tests                    # the model's own tests
```

`.github/workflows/kiln.yml` does the same on pull requests and pushes to `main`, and on `main` registers the model in
MLflow with the alias `staging` when the secret `MLFLOW_TRACKING_URI` is set (the gate's criteria
decide). `deploy/kubernetes.yaml` runs the served model (build its image with `kiln package`
where available, or any image running `kiln serve` on the exported run).
"""

KUBERNETES = """\
# The served model on Kubernetes: readiness on /ready (the model is loaded and warmed up),
# liveness on /health, Prometheus scraping /metrics. Set the image to the one you build and push.
apiVersion: apps/v1
kind: Deployment
metadata:
  name: {name}
  labels: {{app: {name}}}
spec:
  # One replica: kiln serve's prediction log and /feedback live in the pod (serve_state/), so
  # behind several replicas feedback reaches the pod that answered only half the time. More
  # replicas: give each --state-dir on one shared volume, or accept per-pod accuracy.
  replicas: 1
  selector:
    matchLabels: {{app: {name}}}
  template:
    metadata:
      labels: {{app: {name}}}
      annotations:
        prometheus.io/scrape: "true"
        prometheus.io/port: "8000"
        prometheus.io/path: /metrics
    spec:
      securityContext: {{runAsNonRoot: true, runAsUser: 10001}}
      containers:
        - name: model
          image: REGISTRY/{name}:latest
          args: ["serve", "/model", "--host", "0.0.0.0", "--port", "8000"]
          ports: [{{containerPort: 8000, name: http}}]
          readinessProbe:
            httpGet: {{path: /ready, port: http}}
            periodSeconds: 5
          livenessProbe:
            httpGet: {{path: /health, port: http}}
            initialDelaySeconds: 10
            periodSeconds: 10
          resources:
            requests: {{cpu: 250m, memory: 512Mi}}
            limits: {{memory: 1Gi}}
      terminationGracePeriodSeconds: 40  # kiln serve drains requests for 30 s on SIGTERM
---
apiVersion: v1
kind: Service
metadata:
  name: {name}
spec:
  selector: {{app: {name}}}
  ports: [{{port: 80, targetPort: http, name: http}}]
"""
