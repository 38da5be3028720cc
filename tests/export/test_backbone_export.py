"""A torchvision ResNet18 (random init, two classes, 32x32) goes through ``kiln export`` like any
kiln model: ONNX (dynamo) and torch.export files with a dynamic batch axis, each reloaded from
its file and parity-checked against the eager model at batch sizes 1 and 3 (real ONNX Runtime)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import onnxruntime as ort
import torch
from torch import nn

from kiln._vision import torchvision
from kiln.config.entries import parse_model_config
from kiln.data.images.preprocess import Preprocessing
from kiln.data.spec import DataSpec
from kiln.export import ExportOptions, export_run
from kiln.models.package import load_package, save_model_package

SIZE = 32
PREPROCESS = Preprocessing(size=SIZE, resize="shorter_side_then_center_crop", channels=3,
                           mean=(0.485, 0.456, 0.406), std=(0.229, 0.224, 0.225))
# measured 8.3e-7 (ONNX Runtime sums convolutions in another order than torch); torch.export runs
# torch's own kernels: bit-identical
ONNX_MAX_ABS = 1e-5


def resnet18(num_classes: int) -> nn.Module:
    """What ``model.target`` names: torchvision's builder, imported the way kiln imports it."""
    torchvision()
    from torchvision.models import resnet18 as build

    model: nn.Module = build(num_classes=num_classes)
    return model


def _package(root: Path) -> Path:
    torch.manual_seed(0)
    model = resnet18(2).eval()
    with torch.no_grad():  # random-init running statistics are 0 and 1: give BN something to fold
        for module in model.modules():
            if isinstance(module, nn.BatchNorm2d):
                assert module.running_mean is not None and module.running_var is not None
                module.running_mean.uniform_(-0.5, 0.5)
                module.running_var.uniform_(0.5, 2.0)
    cfg = parse_model_config({"name": "resnet18", "target": f"{__name__}:resnet18", "options": {"num_classes": 2}})
    spec = DataSpec(name="image_folder", task="classification", input_shape=PREPROCESS.input_shape,
                    num_classes=2, class_names=("cat", "dog"), mean=PREPROCESS.mean, std=PREPROCESS.std,
                    extra={"preprocess": PREPROCESS.to_dict()})
    save_model_package(root / "models", model, cfg, spec, {"run": root.name})
    return root


def test_resnet18_exports_with_a_dynamic_batch_and_passes_parity(tmp_path: Path) -> None:
    root = _package(tmp_path / "resnet_run")
    report = export_run(root, ExportOptions(formats=("onnx", "torch_export"), samples=6,
                                            batch_sizes=(1, 3), mlflow=False))
    assert report.passed, report.failures()
    for fmt in ("onnx", "torch_export"):
        parity = report.records[fmt]["parity"]
        assert [b["batch_size"] for b in parity["per_batch_size"]] == [1, 3]
        assert parity["samples"] == 6 and parity["agreement"] == 1.0
    assert report.records["onnx"]["parity"]["max_abs_diff"] <= ONNX_MAX_ABS
    assert report.records["torch_export"]["parity"]["max_abs_diff"] == 0.0

    models = root / "models"
    eager = load_package(root).model  # rebuilt from model.json: the package is self-contained
    session = ort.InferenceSession(str(models / "model.onnx"), providers=["CPUExecutionProvider"])
    assert session.get_inputs()[0].shape == ["batch", 3, SIZE, SIZE]
    program = torch.export.load(str(models / "model.pt2")).module()
    rng = np.random.default_rng(1)
    for batch in (1, 3, 5):  # 5: a size neither the example nor parity used
        x = rng.standard_normal((batch, 3, SIZE, SIZE)).astype(np.float32)
        with torch.no_grad():
            want = eager(torch.from_numpy(x)).numpy()
        assert want.shape == (batch, 2)
        np.testing.assert_allclose(session.run(None, {"input": x})[0], want, rtol=0, atol=ONNX_MAX_ABS)
        np.testing.assert_array_equal(program(torch.from_numpy(x)).detach().numpy(), want)
