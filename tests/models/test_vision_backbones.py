"""The torchvision and timm model entries: heads sized for the data, starting weights from a local
file or the library's cache, the documented error when they are neither there nor downloadable.

Weights files are written by the tests from freshly built (seeded) library models, so the logits
and features of kiln's model can be compared with the source model's, bit for bit. Nothing is
downloaded: the cache folders point at empty temporary ones, and downloads go through a proxy on
a closed local port (or the Hub's own offline switch), so they fail at once, as with no network.
"""

from __future__ import annotations

import copy
import re
from pathlib import Path
from typing import Any

import pytest
import torch
from safetensors.torch import save_file
from tests.conftest import run_cli
from torch import nn

from kiln._vision import timm, torchvision
from kiln.config.model_options import TimmOptions, TorchvisionOptions
from kiln.data import DataSpec
from kiln.errors import ConfigError, ModelError, PathError
from kiln.models import MODELS, ModelFactory
from kiln.models.backbones import backbone_split, head_names, replace_module
from kiln.models.build import build_model
from kiln.testing import ModelContract

RGB = DataSpec("photos", "classification", (3, 32, 32), 2)
GRAY = DataSpec("scans", "classification", (1, 32, 32), 3)
IMAGENET = DataSpec("imagenet", "classification", (3, 32, 32), 1000)
NO_NETWORK = {"https_proxy": "http://127.0.0.1:9", "HTTPS_PROXY": "http://127.0.0.1:9", "no_proxy": "", "NO_PROXY": ""}


def source_resnet18(seed: int = 7) -> nn.Module:
    """A torchvision resnet18 as torchvision builds it for ImageNet, randomly initialized."""
    torch.manual_seed(seed)
    model: nn.Module = torchvision().models.resnet18().eval()
    return model


def features(model: nn.Module, x: torch.Tensor) -> torch.Tensor:
    """The output of ``model`` (eval mode) with its classifier head taken off."""
    headless = copy.deepcopy(model).eval()
    replace_module(headless, (head_names(model) or ("fc",))[0], nn.Identity())
    with torch.no_grad():
        out: torch.Tensor = headless(x)
    return out


def images(spec: DataSpec, n: int = 4) -> torch.Tensor:
    return torch.randn(n, *spec.input_shape, generator=torch.Generator().manual_seed(3))


@pytest.fixture
def offline(monkeypatch: pytest.MonkeyPatch, tmp_path: Path) -> Path:
    """An empty torch.hub cache (TORCH_HOME) and no way to download."""
    home = tmp_path / "torch-home"
    monkeypatch.setenv("TORCH_HOME", str(home))
    for key, value in NO_NETWORK.items():
        monkeypatch.setenv(key, value)
    return home


# -- the contract every model entry keeps -----------------------------------------------------


class TestTorchvisionContract(ModelContract):
    @pytest.fixture(params=[(TorchvisionOptions(arch="resnet18"), RGB),
                            (TorchvisionOptions(arch="mobilenet_v3_small", freeze="backbone"), GRAY)],
                    ids=["resnet18", "mobilenet_v3_small-gray-frozen"])
    def case(self, request: pytest.FixtureRequest) -> tuple[Any, DataSpec]:
        return request.param  # type: ignore[no-any-return]

    @pytest.fixture
    def build(self) -> ModelFactory[TorchvisionOptions]:
        return MODELS.get("torchvision")

    @pytest.fixture
    def options(self, case: tuple[Any, DataSpec]) -> Any:
        return case[0]

    @pytest.fixture
    def spec(self, case: tuple[Any, DataSpec]) -> DataSpec:
        return case[1]


class TestTimmContract(TestTorchvisionContract):
    @pytest.fixture(params=[(TimmOptions(arch="test_resnet"), RGB),
                            (TimmOptions(arch="resnet10t", freeze="backbone"), GRAY)],
                    ids=["test_resnet", "resnet10t-gray-frozen"])
    def case(self, request: pytest.FixtureRequest) -> tuple[Any, DataSpec]:
        return request.param  # type: ignore[no-any-return]

    @pytest.fixture
    def build(self) -> ModelFactory[TimmOptions]:  # type: ignore[override]
        return MODELS.get("timm")


# -- heads and freezing ------------------------------------------------------------------------


@pytest.mark.parametrize(("arch", "head"), [
    ("resnet18", "fc"), ("mobilenet_v3_small", "classifier.3"), ("efficientnet_b0", "classifier.1"),
    ("convnext_tiny", "classifier.2"), ("vit_b_16", "heads.head"), ("squeezenet1_1", "classifier.1"),
])
def test_the_torchvision_head_is_replaced_for_the_datas_classes(arch: str, head: str) -> None:
    spec = DataSpec("photos", "classification", (3, 64, 64), 5)
    model = build_model(TorchvisionOptions(arch=arch, freeze="backbone"), spec)
    assert head_names(model) == (head,)
    with torch.no_grad():
        assert model.eval()(images(spec, 2)).shape == (2, 5)
    split = backbone_split(model)
    assert split is not None
    backbone, head_params = split
    assert [p.requires_grad for p in head_params] == [True, True]  # weight and bias
    assert not any(p.requires_grad for p in backbone)


def test_an_unknown_arch_or_weights_name_is_a_config_error_with_a_did_you_mean() -> None:
    with pytest.raises(ConfigError, match=r"'resnet81' is not a torchvision classification model(.|\n)*did you mean 'resnet18'"):
        build_model(TorchvisionOptions(arch="resnet81"), RGB)
    with pytest.raises(ConfigError, match=r"'convnxt_tiny' is not a timm classification model(.|\n)*did you mean 'convnext_tiny'"):
        build_model(TimmOptions(arch="convnxt_tiny"), RGB)
    with pytest.raises(ConfigError, match=r"weights_name 'IMAGENET1K_V9'(.|\n)*allowed: IMAGENET1K_V1, IMAGENET1K_V2, DEFAULT"):
        build_model(TorchvisionOptions(arch="resnet50", pretrained=True, weights_name="IMAGENET1K_V9"), RGB)


def test_images_an_arch_cannot_take_are_refused_when_the_model_is_built() -> None:
    with pytest.raises(ModelError, match=r"squeezenet1_0 cannot take \[3, 16, 16\] images(.|\n)*data\.image\.size"):
        build_model(TorchvisionOptions(arch="squeezenet1_0"), DataSpec("tiny", "classification", (3, 16, 16), 2))
    with pytest.raises(ModelError, match="needs images of 1 or 3 channels"):
        build_model(TimmOptions(arch="test_resnet"), DataSpec("table", "classification", (5,), 2))


# -- model.weights: a local file ---------------------------------------------------------------


@pytest.mark.parametrize("suffix", [".pth", ".safetensors"])
def test_a_weights_file_gives_the_source_models_features_and_a_fresh_head(tmp_path: Path, suffix: str) -> None:
    source = source_resnet18()
    path = save_state(source, tmp_path / f"resnet18{suffix}")
    model = build_model(TorchvisionOptions(arch="resnet18", weights=path), RGB)
    x = images(RGB)
    assert torch.equal(features(model, x), features(source, x))
    assert model.state_dict()["fc.weight"].shape == (2, 512)


def test_a_weights_file_whose_head_fits_the_classes_gives_the_source_models_logits(tmp_path: Path) -> None:
    source = source_resnet18()
    model = build_model(TorchvisionOptions(arch="resnet18", weights=save_state(source, tmp_path / "r.pth")), IMAGENET)
    x = images(IMAGENET)
    with torch.no_grad():
        assert torch.equal(model.eval()(x), source(x))
    # a kiln model of the same arch and classes goes on with its own head too
    trained = build_model(TorchvisionOptions(arch="resnet18"), RGB).eval()
    again = build_model(TorchvisionOptions(arch="resnet18", weights=save_state(trained, tmp_path / "k.safetensors")), RGB)
    with torch.no_grad():
        assert torch.equal(again.eval()(images(RGB)), trained(images(RGB)))


def test_a_timm_weights_file_gives_the_source_models_features(tmp_path: Path) -> None:
    torch.manual_seed(5)
    source = timm().create_model("test_resnet").eval()
    model = build_model(TimmOptions(arch="test_resnet", weights=save_state(source, tmp_path / "t.safetensors")), RGB)
    x = images(RGB)
    with torch.no_grad():
        assert torch.equal(model.eval().forward_features(x), source.forward_features(x))


def test_an_rgb_weights_file_fits_a_grayscale_model_by_summing_the_first_filters(tmp_path: Path) -> None:
    source = source_resnet18()
    model = build_model(TorchvisionOptions(arch="resnet18", weights=save_state(source, tmp_path / "r.pth")), GRAY)
    assert torch.equal(model.conv1.weight, source.conv1.weight.sum(dim=1, keepdim=True))
    gray = images(GRAY)  # a gray image is the same value in R, G and B
    assert torch.allclose(features(model, gray), features(source, gray.repeat(1, 3, 1, 1)), atol=1e-4)


def test_weights_files_that_cannot_be_used_name_the_file_and_the_fix(tmp_path: Path) -> None:
    missing = tmp_path / "nowhere.pth"
    with pytest.raises(PathError, match=re.escape(f"model.weights {missing} does not exist")) as err:
        build_model(TorchvisionOptions(arch="resnet18", weights=missing), RGB)
    assert err.value.exit_code == 2
    pickled = tmp_path / "object.pth"
    torch.save({"model": Path("x")}, pickled)  # an object, not tensors: never unpickled
    with pytest.raises(ConfigError, match=r"cannot be read as weights \(kiln reads tensors only"):
        build_model(TorchvisionOptions(arch="resnet18", weights=pickled), RGB)
    text = tmp_path / "notes.safetensors"
    text.write_text("not weights")
    with pytest.raises(ConfigError, match=r"notes\.safetensors cannot be read as weights"):
        build_model(TorchvisionOptions(arch="resnet18", weights=text), RGB)
    torch.manual_seed(0)
    other = save_state(torchvision().models.resnet34(), tmp_path / "resnet34.pth")
    with pytest.raises(ConfigError, match=r"resnet34\.pth does not fit torchvision's resnet18: not in the model: layer1\.2\.") as err2:
        build_model(TorchvisionOptions(arch="resnet18", weights=other), RGB)
    assert err2.value.exit_code == 2 and "<run>/models/model.safetensors" in str(err2.value)


# -- model.pretrained: the library's weights and cache -----------------------------------------


def test_pretrained_loads_torchvisions_file_from_the_torch_hub_cache(offline: Path) -> None:
    source = source_resnet18()
    weights = torchvision().models.get_model_weights("resnet18").DEFAULT
    cached = offline / "hub" / "checkpoints" / Path(weights.url).name  # where torchvision keeps it
    cached.parent.mkdir(parents=True)
    torch.save(source.state_dict(), cached)
    model = build_model(TorchvisionOptions(arch="resnet18", pretrained=True), RGB)
    x = images(RGB)
    assert torch.equal(features(model, x), features(source, x))
    assert model.state_dict()["fc.weight"].shape == (2, 512)  # the head is the data's, fresh


def test_pretrained_without_cache_or_network_names_the_file_the_folder_and_model_weights(offline: Path) -> None:
    weights = torchvision().models.get_model_weights("resnet18").DEFAULT
    with pytest.raises(ConfigError) as err:
        build_model(TorchvisionOptions(arch="resnet18", pretrained=True), RGB)
    message = str(err.value)
    assert "torchvision's ResNet18_Weights.IMAGENET1K_V1 weights are not on this machine" in message
    assert f"the file {Path(weights.url).name} from {weights.url}" in message
    assert f"looks for it in {offline / 'hub' / 'checkpoints'}" in message
    assert "model.weights: PATH" in message and err.value.exit_code == 2
    assert not any((offline / "hub" / "checkpoints").iterdir())  # no partial download left


def test_a_saved_model_is_rebuilt_without_fetching_its_starting_weights(offline: Path) -> None:
    """What loading a model package does (ModelConfig.for_loading): same architecture, no download."""
    options = TorchvisionOptions(arch="googlenet", pretrained=True)  # its builder sets transform_input
    model = build_model(options.for_loading(), RGB)
    assert model.transform_input is True and model.aux1 is None  # as built for the weights
    rebuilt = build_model(TimmOptions(arch="test_resnet", weights=Path("gone.pth")).for_loading(), RGB)
    assert rebuilt.state_dict().keys() == build_model(TimmOptions(arch="test_resnet"), RGB).state_dict().keys()


@pytest.mark.slow
def test_kiln_train_stops_before_training_when_timms_weights_are_unavailable(tmp_path: Path) -> None:
    """The CLI, offline (HF_HUB_OFFLINE) with an empty Hugging Face cache: exit 2, the documented
    message, no traceback, no run trained."""
    result = run_cli(
        "train", "-c", "configs/digits_mlp.yaml", f"run.output_dir={tmp_path / 'runs'}", "data.name=synthetic",
        "data.synthetic.input_shape=[3,32,32]", "data.synthetic.n_samples=40", "tracking.backends=[jsonl]",
        "model.name=timm", "model.arch=test_resnet", "model.pretrained=true",
        env={**NO_NETWORK, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"},
    )
    assert result.returncode == 2, result.stderr
    assert "Traceback" not in result.stderr
    assert "timm's test_resnet weights are not on this machine" in result.stderr
    assert "model.safetensors or pytorch_model.bin of the Hugging Face Hub repository timm/test_resnet.r160_in1k" in result.stderr
    assert str(tmp_path / "hf" / "hub" / "models--timm--test_resnet.r160_in1k") in result.stderr
    assert "model.weights: PATH" in result.stderr
    assert not list((tmp_path / "runs").glob("*/models"))


@pytest.mark.slow
def test_timm_pretrained_loads_its_file_from_the_hugging_face_cache(tmp_path: Path) -> None:
    """A real ``kiln train`` with the backbone frozen: the trained model's backbone weights are
    the cached file's (and its head the data's)."""
    torch.manual_seed(11)
    source = timm().create_model("test_resnet")
    snapshot = tmp_path / "hf" / "hub" / "models--timm--test_resnet.r160_in1k" / "snapshots" / ("0" * 40)
    snapshot.mkdir(parents=True)
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("0" * 40)
    save_state(source, snapshot / "model.safetensors")
    result = run_cli(
        "train", "-c", "configs/digits_mlp.yaml", f"run.output_dir={tmp_path / 'runs'}", "run.name=cached",
        "data.name=synthetic", "data.synthetic.input_shape=[3,32,32]", "data.synthetic.n_samples=40",
        "data.synthetic.num_classes=3", "tracking.backends=[jsonl]", "training.epochs=1", "run.progress=false",
        "model.name=timm", "model.arch=test_resnet", "model.pretrained=true", "model.freeze=backbone",
        env={**NO_NETWORK, "HF_HOME": str(tmp_path / "hf"), "HF_HUB_OFFLINE": "1"},
    )
    assert result.returncode == 0, result.stderr
    from safetensors.torch import load_file

    (package,) = (tmp_path / "runs").glob("cached_*/models/model.safetensors")
    trained = load_file(str(package))
    expected = source.state_dict()  # parameters and batch-norm statistics: frozen alike
    backbone = [k for k in expected if not k.startswith("fc.") and k in trained]
    assert len(backbone) > 20 and all(torch.equal(trained[k], expected[k]) for k in backbone)
    assert trained["fc.weight"].shape == (3, expected["fc.weight"].shape[1])


def save_state(model: nn.Module, path: Path) -> Path:
    state = {k: v.detach().clone().contiguous() for k, v in model.state_dict().items()}
    if path.suffix == ".safetensors":
        save_file(state, str(path))
    else:
        torch.save(state, path)
    return path

