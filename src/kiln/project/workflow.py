"""The GitHub Actions workflow ``kiln init`` writes: ``.github/workflows/kiln.yml``.

Every pull request and push to main: install (pip cache), get the data, run the project's tests, train
into a fixed run directory, gate (the table in the log, in markdown on the job's summary page),
export to ONNX with its parity check, upload the run. On the main branch, when the
``MLFLOW_TRACKING_URI`` secret is set: register the model and give it the ``staging`` alias,
gated on the same criteria (the config's ``gate.require``); when the ``IMAGE_REGISTRY`` secret is
set: ``kiln package`` the serving image's build context, build it and push it.

The ``run:`` steps are plain shell over kiln's commands, so ``tests/project`` runs them in order,
in a fresh project, with the kiln under test: a renamed flag breaks kiln's tests, not a user's
pipeline. Only the ``uses:`` steps (checkout, Python, upload) are GitHub's own.
"""

from __future__ import annotations

RUN_DIR = "runs/ci"
INSTALL_STEP = "Install"  # a run: step the tests leave out: the kiln under test is installed
PUSH_STEP = "Build and push the serving image"  # and this one: docker needs a daemon and a registry

WORKFLOW = """\
# Train, gate, export and (on main) register the model, on pull requests and pushes to main.
# Written by `kiln init`; edit freely. Secrets, all optional: MLFLOW_TRACKING_URI is the MLflow
# server that tracks the runs and holds the registry (without it, runs are tracked in runs/mlflow.db
# and nothing is registered); IMAGE_REGISTRY (+ _USER, _PASSWORD) receives the serving image.
name: kiln

on:
  push:
    branches: [main]  # other branches run through their pull request (not twice)
  pull_request:

permissions:
  contents: read

concurrency:
  group: kiln-${{{{ github.ref }}}}
  # a newer push to a pull request replaces its older run; on main each run finishes (register, push)
  cancel-in-progress: ${{{{ github.ref != 'refs/heads/main' }}}}

env:
  KILN_RUN: {run_dir}
  MODEL_NAME: {name}
  MLFLOW_DISABLE_TELEMETRY: "true"
  MLFLOW_TRACKING_URI: ${{{{ secrets.MLFLOW_TRACKING_URI }}}}
  IMAGE_REGISTRY: ${{{{ secrets.IMAGE_REGISTRY }}}}

defaults:
  run:
    shell: bash  # -e and -o pipefail: a failed command in a pipe fails its step

jobs:
  train:
    runs-on: ubuntu-latest
    timeout-minutes: 60
    steps:
      - uses: actions/checkout@v4

      - uses: actions/setup-python@v5
        with:
          python-version: "3.11"
          cache: pip
          cache-dependency-path: requirements.txt

      - name: {install}
        run: |
          python -m pip install --upgrade pip
          pip install -r requirements.txt
{data_step}
      - name: Test the model code
        run: python -m pytest -q tests

      - name: Train
        run: kiln train -c kiln.yaml --run-dir "$KILN_RUN" --quiet

      - name: Gate  # the table in the log, in markdown on the job's summary page; fails the job
        run: kiln gate "$KILN_RUN" --format markdown --output "$GITHUB_STEP_SUMMARY"

      - name: Export to ONNX
        run: kiln export "$KILN_RUN" --format onnx

      - name: Upload the run
        if: always()
        uses: actions/upload-artifact@v4
        with:
          name: kiln-run
          path: ${{{{ env.KILN_RUN }}}}
          if-no-files-found: ignore

      - name: Register and promote to staging
        if: github.ref == 'refs/heads/main' && env.MLFLOW_TRACKING_URI != ''
        run: kiln registry register "$KILN_RUN" --name "$MODEL_NAME" --alias staging

      # The serving image (ONNX Runtime, no torch), when the secret IMAGE_REGISTRY names a registry
      # (e.g. ghcr.io/OWNER) and IMAGE_REGISTRY_USER / IMAGE_REGISTRY_PASSWORD can push to it.
      - name: Package the serving image
        if: github.ref == 'refs/heads/main' && env.IMAGE_REGISTRY != ''
        run: kiln package "$KILN_RUN" --output build/image

      - name: Log in to the image registry
        if: github.ref == 'refs/heads/main' && env.IMAGE_REGISTRY != ''
        uses: docker/login-action@v3
        with:
          registry: ${{{{ env.IMAGE_REGISTRY }}}}
          username: ${{{{ secrets.IMAGE_REGISTRY_USER }}}}
          password: ${{{{ secrets.IMAGE_REGISTRY_PASSWORD }}}}

      - name: {push}
        if: github.ref == 'refs/heads/main' && env.IMAGE_REGISTRY != ''
        run: |
          image="$IMAGE_REGISTRY/$MODEL_NAME"
          docker build --tag "$image:${{GITHUB_SHA::12}}" --tag "$image:latest" build/image
          docker push "$image:${{GITHUB_SHA::12}}"
          docker push "$image:latest"  # what deploy/kubernetes.yaml runs
"""

DATA_STEP = """
      - name: Get the data
        run: python scripts/get_data.py
"""


def workflow_text(name: str, has_data_script: bool) -> str:
    return WORKFLOW.format(run_dir=RUN_DIR, name=name, install=INSTALL_STEP, push=PUSH_STEP,
                           data_step=DATA_STEP if has_data_script else "")
