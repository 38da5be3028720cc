"""``package_model``: a container build context serving one model without torch.

The context holds everything ``docker build`` (or ``podman build``) needs and nothing it must
fetch but the base image and the pinned wheels::

    Dockerfile              slim Python, non-root user, HEALTHCHECK on /ready, labels
    requirements.txt        the serving closure, pinned (kiln.package.requirements)
    wheels/kiln_ml-*.whl    this kiln, installed with --no-deps (kiln.package.wheel)
    model/models/           model.json, the ONNX export and exports.json, byte for byte
    deploy/kubernetes.yaml  the manifest kiln init writes, named after the model
    README.md               how to build, run and deploy it

The model is resolved and its export checked exactly as ``kiln serve`` does it
(:func:`kiln.serve.model.prepare_model`): an export whose parity record failed or is missing is
refused unless ``allow_unverified``, and the container's ``kiln serve`` checks it again at start.

>>> package_model("runs/digits_mlp_20261123_101500", Path("image"))  # doctest: +SKIP
"""

from __future__ import annotations

import re
import shutil
from dataclasses import dataclass, field
from pathlib import Path

from kiln.errors import PathError, UsageError
from kiln.package.dockerfile import MODEL_DIR, base_image, dockerfile, serve_args
from kiln.package.readme import readme
from kiln.package.requirements import serving_pins
from kiln.package.wheel import kiln_install
from kiln.serve.model import ModelSource

# What package_model writes, and with --force replaces; other files in the folder are left alone.
WRITES = ("Dockerfile", "README.md", "requirements.txt", "model", "wheels", "deploy/kubernetes.yaml")


@dataclass(frozen=True)
class PackageResult:
    output: Path
    image: str  # the tag README.md builds: NAME:VERSION
    labels: dict[str, str]
    files: list[Path] = field(default_factory=list)  # every file written, sorted


def package_model(model: str | Path, output: Path, *, force: bool = False,
                  allow_unverified: bool = False) -> PackageResult:
    """Write the build context of ``model`` (a run directory, a ``models:/`` URI or an ONNX file)
    into ``output``. UsageError when ``output`` is a file or holds anything, unless ``force``
    (which replaces only what this function writes); ServeError for an unverified export."""
    from kiln.serve.model import prepare_model

    _check_output(output, force)
    source = prepare_model(model, "onnx", allow_unverified=allow_unverified)
    assert source.export_file is not None  # the onnx backend always runs an export file
    labels = image_labels(source)
    name = k8s_name(source.name)
    image = f"{name}:{_tag(source.version)}"
    for relative in WRITES:  # only reached with force, or in an empty folder
        path = output / relative
        if path.is_dir():
            shutil.rmtree(path)
        elif path.exists():
            path.unlink()
    output.mkdir(parents=True, exist_ok=True)
    _copy_model(source, output / "model")
    kiln = kiln_install(output)
    pins = serving_pins()
    (output / "requirements.txt").write_text(
        f"# The serving dependencies of kiln serve --backend onnx, pinned as installed where\n"
        f"# kiln package ran ({base_image()}). No torch, no MLflow.\n" + "\n".join(pins) + "\n",
        encoding="utf-8")
    title = f"{source.name} version {source.version}"
    args = serve_args(serve_target(source), allow_unverified=not (source.parity and source.parity.verified))
    (output / "Dockerfile").write_text(dockerfile(labels, kiln, title, args), encoding="utf-8")
    (output / "deploy").mkdir(exist_ok=True)
    (output / "deploy" / "kubernetes.yaml").write_text(_kubernetes(name, args), encoding="utf-8")
    (output / "README.md").write_text(readme(title, image, kiln, args), encoding="utf-8")
    files = sorted(p for p in output.rglob("*") if p.is_file())
    return PackageResult(output, image, labels, files)


def image_labels(source: ModelSource) -> dict[str, str]:
    """OCI annotations and kiln's own: which model, which version, from which run and commit."""
    from kiln._version import __version__
    from kiln.models.package_files import read_meta
    from kiln.runs.layout import read_json_if_present
    from kiln.serve.model import mlflow_run_id

    meta = read_meta(source.package_dir)
    environment = read_json_if_present(source.package_dir.parent / "environment.json") or {}
    git = environment.get("git") or {}
    commit = str(git.get("commit") or "unknown")
    parity = source.parity.verdict if source.parity else "unchecked"
    return {
        "org.opencontainers.image.title": source.name,
        "org.opencontainers.image.version": source.version,
        "org.opencontainers.image.revision": commit,
        "org.opencontainers.image.description": f"kiln serve (ONNX Runtime) of {source.name} "
                                                 f"version {source.version}",
        "kiln.model.name": source.name,
        "kiln.model.version": source.version,
        "kiln.model.run": str(meta.get("run") or source.package_dir.parent.name),
        "kiln.model.run_id": mlflow_run_id(source) or "",
        "kiln.model.git_commit": commit,
        "kiln.model.git_dirty": str(bool(git.get("dirty"))).lower(),
        "kiln.model.config_hash": str(meta.get("config_hash") or ""),
        "kiln.model.parity": parity,
        "kiln.version": __version__,
    }


def k8s_name(name: str) -> str:
    """``name`` as a Kubernetes object name (RFC 1123 label: lowercase, digits, '-', <= 63)."""
    text = re.sub(r"[^a-z0-9-]+", "-", name.lower()).strip("-")[:63].strip("-")
    return text or "kiln-model"


def _tag(version: str) -> str:
    return re.sub(r"[^A-Za-z0-9_.-]", "-", version)[:128] or "latest"


def _check_output(output: Path, force: bool) -> None:
    if output.exists() and not output.is_dir():
        raise PathError(f"--output {output} is a file; kiln package writes a build context into a folder")
    if output.is_dir() and any(output.iterdir()) and not force:
        held = sorted(p.name for p in output.iterdir())
        raise UsageError(
            f"--output {output} is not empty (it holds {', '.join(held[:5])}"
            f"{', ...' if len(held) > 5 else ''}): kiln package overwrites nothing unless --force",
            hint="name a new folder, or pass --force to replace the context's files there",
        )


def _copy_model(source: ModelSource, into: Path) -> None:
    """model.json, the export and its parity record, unchanged (the server checks the export's
    sha256 against the record); the training data's reference statistics, so the image's server
    exports drift; the MLflow link of the run, so /metadata names its run id. The safetensors
    weights stay out: ONNX Runtime runs the export alone."""
    from kiln.export.record import EXPORTS
    from kiln.models.package_files import META
    from kiln.models.reference import REFERENCE

    assert source.export_file is not None
    models = into / "models"
    models.mkdir(parents=True)
    for path in (source.package_dir / META, source.package_dir / EXPORTS, source.export_file,
                 source.package_dir / "MODEL_CARD.md", source.package_dir / REFERENCE):
        if path.is_file():
            shutil.copy2(path, models / path.name)
    link = source.package_dir.parent / "logs" / "mlflow.json"
    if link.is_file():
        (into / "logs").mkdir()
        shutil.copy2(link, into / "logs" / "mlflow.json")


def serve_target(source: ModelSource) -> str:
    """What the container serves: ``/model`` when the export is the package's default ONNX one
    (``kiln serve`` finds it there), else the export file itself (``model.int8.onnx``, say)."""
    from kiln.export.record import read_exports

    assert source.export_file is not None
    record = read_exports(source.package_dir).get("exports", {}).get("onnx") or {}
    if record.get("file") == source.export_file.name:
        return MODEL_DIR
    return f"{MODEL_DIR}/models/{source.export_file.name}"


def _kubernetes(name: str, args: list[str]) -> str:
    """kiln init's manifest (the same probes, annotations and Service), its container running
    the image's own command (an int8 export, --allow-unverified: whatever the Dockerfile says)."""
    import json

    from kiln.project.files import KUBERNETES

    lines = KUBERNETES.format(name=name).splitlines(keepends=True)
    (index,) = [i for i, line in enumerate(lines) if line.lstrip().startswith("args: ")]
    indent = lines[index][: len(lines[index]) - len(lines[index].lstrip())]
    lines[index] = f"{indent}args: {json.dumps(args)}\n"
    return "".join(lines)
