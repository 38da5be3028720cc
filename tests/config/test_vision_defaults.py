"""A pretrained backbone's own preprocessing fills ``data.image``'s unset fields when the config is
validated, so the saved config.yaml holds the values training used (kiln.config.vision_defaults)."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import yaml

from kiln.config import load_config
from kiln.config.image_options import ImageConfig, ImageFolderOptions
from kiln.config.loader import config_hash, to_yaml
from kiln.errors import ConfigError

FOLDER = ("data.name=image_folder", "data.path=photos")


def image(*overrides: str) -> ImageConfig:
    data = load_config(None, [*FOLDER, *overrides]).data
    assert isinstance(data, ImageFolderOptions)
    return data.image


def test_torchvision_weights_give_their_crop_resize_and_statistics() -> None:
    got = image("model.name=torchvision", "model.arch=resnet18", "model.pretrained=true")
    assert (got.size, got.resize_size, got.channels) == (224, 256, 3)
    assert got.mean == [0.485, 0.456, 0.406] and got.std == [0.229, 0.224, 0.225]
    # another weights of another arch: resnet50's V2 weights were trained resizing to 232
    v2 = image("model.name=torchvision", "model.arch=resnet50", "model.pretrained=true", "model.weights_name=IMAGENET1K_V2")
    assert (v2.size, v2.resize_size) == (224, 232)


def test_timm_weights_give_their_input_size_crop_pct_and_statistics() -> None:
    got = image("model.name=timm", "model.arch=test_resnet", "model.pretrained=true")
    assert (got.size, got.resize_size, got.channels) == (160, 168, 3)  # crop_pct 0.95: floor(160 / 0.95)
    assert got.mean == [0.5, 0.5, 0.5] and got.std == [0.5, 0.5, 0.5]
    assert got.interpolation == "bilinear"  # this one's cfg says so; most of timm's say bicubic:
    assert image("model.name=timm", "model.arch=test_convnext", "model.pretrained=true").interpolation == "bicubic"


def test_the_weights_resize_filter_is_filled_and_yours_kept() -> None:
    assert image("model.name=torchvision", "model.arch=resnet18", "model.pretrained=true").interpolation == "bilinear"
    kept = image("model.name=timm", "model.arch=test_resnet", "model.pretrained=true", "data.image.interpolation=nearest")
    assert kept.interpolation == "nearest"
    assert image("model.name=timm", "model.arch=test_resnet").interpolation is None  # from scratch: as written


def test_what_you_set_is_kept_and_the_rest_follows_it() -> None:
    got = image(
        "model.name=torchvision", "model.arch=resnet18", "model.pretrained=true", "data.image.size=64",
        "data.image.channels=1", "data.image.std=dataset",
    )
    assert (got.size, got.resize_size, got.channels) == (64, 73, 1)  # 64 of 73 as 224 of 256
    assert got.mean == [0.449] and got.std == "dataset"  # one channel: the average of the three
    timm = image("model.name=timm", "model.arch=test_resnet", "model.weights=my.safetensors", "data.image.size=64")
    assert (timm.size, timm.resize_size) == (64, 67)  # a weights file: as pretrained
    stretched = image("model.name=torchvision", "model.arch=resnet18", "model.pretrained=true", "data.image.resize=stretch")
    assert stretched.size == 224 and stretched.resize_size is None  # stretch has no shorter side


def test_a_model_from_scratch_leaves_the_image_section_as_written() -> None:
    got = image("model.name=torchvision", "model.arch=resnet18")
    assert (got.size, got.resize_size, got.channels, got.mean, got.std) == (None, None, None, None, None)


def test_the_saved_config_holds_the_resolved_values_and_reads_back_identical(tmp_path: Path) -> None:
    cfg = load_config(None, [*FOLDER, "model.name=timm", "model.arch=test_resnet", "model.pretrained=true"])
    saved = tmp_path / "config.yaml"
    saved.write_text(to_yaml(cfg))
    assert yaml.safe_load(saved.read_text())["data"]["image"]["size"] == 160
    again = load_config(saved)
    assert again == cfg and config_hash(again) == config_hash(cfg)


def test_an_unknown_arch_with_weights_is_a_config_error_when_the_config_is_read() -> None:
    with pytest.raises(ConfigError, match=r"model\.arch 'resnet81' is not a torchvision(.|\n)*did you mean 'resnet18'") as err:
        load_config(None, [*FOLDER, "model.name=torchvision", "model.arch=resnet81", "model.pretrained=true"])
    assert err.value.exit_code == 2
    with pytest.raises(ConfigError, match=r"timm has no weights 'resnet18\.nope'(.|\n)*allowed: resnet18\.a1_in1k"):
        load_config(None, [*FOLDER, "model.name=timm", "model.arch=resnet18.nope", "model.pretrained=true"])
    with pytest.raises(ConfigError, match=r"pretrained and model\.weights both name starting weights"):
        load_config(None, ["model.name=timm", "model.arch=resnet18", "model.pretrained=true", "model.weights=a.pth"])


PROBE = """
import json, sys
from kiln.config import load_config
from kiln.config.loader import to_yaml
load_config(None, ["model.name=torchvision", "model.arch=resnet18", "model.pretrained=true"])  # no image section
plain = "torchvision" in sys.modules
text = to_yaml(load_config(None, {folder!r} + ["model.name=torchvision", "model.arch=resnet18", "model.pretrained=true"]))
open({path!r}, "w").write(text)
"""

READ_BACK = """
import json, sys
from kiln.config import load_config
load_config({path!r})
print(json.dumps({{"torchvision": "torchvision" in sys.modules, "timm": "timm" in sys.modules}}))
"""


def test_the_libraries_are_imported_only_with_something_to_fill(tmp_path: Path) -> None:
    """Reading back a resolved config (kiln eval, resume, serve) does not import torchvision."""
    path = str(tmp_path / "config.yaml")
    probe = PROBE.replace("{folder!r}", repr(list(FOLDER))).replace("{path!r}", repr(path))
    probe += "print(json.dumps({'plain': plain}))\n"
    first = json.loads(subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, check=True).stdout.splitlines()[-1])
    assert first == {"plain": False}
    second = subprocess.run([sys.executable, "-c", READ_BACK.format(path=path)], capture_output=True, text=True, check=True)
    assert json.loads(second.stdout.splitlines()[-1]) == {"torchvision": False, "timm": False}
