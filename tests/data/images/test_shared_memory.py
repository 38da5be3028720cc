"""``data.image.cache: memory`` and /dev/shm: every split's store counted together, times the ranks
on the node, before any is made; a store torch cannot reserve is the same ConfigError; eval and
export's parity samples make none.

The arithmetic is tested on figures passed in (``check``), the rest on the real /dev/shm with sizes
derived from its own free space, except where a build must be refused whatever the machine holds:
there the one function that reads the free space (``free_space``) answers a figure. No test makes
a store near /dev/shm's size: torch reserves a store whole, in RAM."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

from kiln.config.image_options import ImageFolderOptions
from kiln.data.images import shared_memory
from kiln.data.images.build import build
from kiln.data.images.dataset import ImageFolderDataset
from kiln.data.images.preprocess import Preprocessing
from kiln.data.images.shared_memory import (
    SHARED_MEMORY,
    available_memory,
    check,
    check_shared_memory,
    free_space,
    local_ranks,
    store_bytes,
)
from kiln.errors import ConfigError
from kiln.testing.images import write_digits_folder

MiB = 2**20
SIZE = 16


@pytest.fixture
def one_process(monkeypatch: pytest.MonkeyPatch) -> None:
    """Not under torchrun, whatever launched pytest."""
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)


def real_free() -> int:
    free = free_space()
    if free is None:
        pytest.skip("no /dev/shm here (not Linux)")
    return free


def test_the_splits_are_counted_together_not_each_against_the_same_free_space() -> None:
    sizes = {"train": 40 * MiB, "val": 40 * MiB, "test": 40 * MiB}
    for name, size in sizes.items():
        check({name: size}, free=100 * MiB)  # each alone fits
    with pytest.raises(ConfigError) as refused:
        check(sizes, free=100 * MiB)
    message = str(refused.value)
    assert "needs 120.0 MiB of shared memory (train 40.0 MiB + val 40.0 MiB + test 40.0 MiB)" in message
    assert "/dev/shm has 100.0 MiB free" in message
    assert refused.value.field == "data.image.cache" and refused.value.exit_code == 2
    for fix in ("data.image.cache=disk", "data.image.size", "--shm-size"):
        assert fix in message
    check(sizes, free=120 * MiB)  # exactly enough is enough


def test_every_rank_on_the_node_is_counted() -> None:
    check({"train": 40 * MiB, "val": 10 * MiB}, free=60 * MiB, ranks=1)
    with pytest.raises(ConfigError, match=r"(?s)needs 100.0 MiB .*train 40.0 MiB \+ val 10.0 MiB, times 2 ranks on "
                                          r"this node \(LOCAL_WORLD_SIZE\)\).*torchrun --nproc_per_node"):
        check({"train": 40 * MiB, "val": 10 * MiB}, free=60 * MiB, ranks=2, ranks_from="LOCAL_WORLD_SIZE")
    assert local_ranks({"LOCAL_WORLD_SIZE": "4", "WORLD_SIZE": "8"}) == (4, "LOCAL_WORLD_SIZE")
    assert local_ranks({"WORLD_SIZE": "8"})[0] == 8  # another launcher: all may share this node
    assert local_ranks({}) == (1, "a single process")


def test_on_the_real_shared_memory_three_splits_fit_alone_not_together(
        one_process: None, monkeypatch: pytest.MonkeyPatch) -> None:
    part = int(real_free() * 0.4)
    sizes = {"train": part, "val": part, "test": part}
    for name, size in sizes.items():
        check_shared_memory({name: size}, free_space())
    with pytest.raises(ConfigError, match=r"\(train .* \+ val .* \+ test .*\), but /dev/shm has"):
        check_shared_memory(sizes, free_space())
    two = {"train": part, "val": part // 2}  # 60 % of the free space: fits one rank, not two
    check_shared_memory(two, free_space())
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")
    with pytest.raises(ConfigError, match=r"times 2 ranks on this node \(LOCAL_WORLD_SIZE\)"):
        check_shared_memory(two, free_space())


def test_a_store_torch_cannot_reserve_is_a_config_error(one_process: None) -> None:
    """Larger than the whole of /dev/shm, so the kernel refuses it at once, taking nothing."""
    real_free()
    total = shutil.disk_usage(SHARED_MEMORY).total
    side = 1024
    count = total // (3 * side * side) + 8
    big = Preprocessing(size=side, resize="stretch", channels=3, mean=(0.5,), std=(0.5,))
    with pytest.raises(ConfigError, match=r"(?s)needs .* \(this split .*\), but /dev/shm has .* free: torch could not "
                                          r"reserve it \(unable to allocate shared memory") as refused:
        ImageFolderDataset([f"never-read-{i}.png" for i in range(count)], [0] * count, big, cache="memory")
    assert "--shm-size" in str(refused.value)


def test_a_store_is_reserved_whole_as_it_is_made(tmp_path: Path, one_process: None) -> None:
    """What the count rests on: a store takes its size from /dev/shm before an image is written
    (torch reserves it), so stores made earlier are already out of the free space."""
    real_free()
    count, side = 64, 128  # 3 MiB
    pre = Preprocessing(size=side, resize="stretch", channels=3, mean=(0.5,), std=(0.5,))
    before = free_space()
    ds = ImageFolderDataset([f"never-read-{i}.png" for i in range(count)], [0] * count, pre, cache="memory")
    taken = before - free_space()  # type: ignore[operator]
    assert abs(taken - store_bytes(count, (3, side, side))) < 2 * MiB  # other processes may move it a little
    del ds


@pytest.fixture
def folder(tmp_path: Path) -> Path:
    return write_digits_folder(tmp_path / "photos", classes=3, per_class=10, size=20)


def _options(folder: Path) -> ImageFolderOptions:
    return ImageFolderOptions.model_validate({"path": folder, "image": {"size": SIZE, "cache": "memory",
                                                                        "mean": "dataset", "std": "dataset"}})


def test_the_bundle_is_counted_whole_before_any_store_is_made(
        folder: Path, one_process: None, monkeypatch: pytest.MonkeyPatch) -> None:
    """The builder counts train, val and test at once (10 a class: 7, 1 and 2 each) against the
    free space before its scan, and makes no store when they do not fit; exactly enough builds."""
    shape = (3, SIZE, SIZE)
    need = store_bytes(21, shape) + store_bytes(3, shape) + store_bytes(6, shape)
    made: list[int] = []
    real_store = shared_memory.MemoryStore.__init__

    def counted(self: shared_memory.MemoryStore, *args: object) -> None:
        made.append(1)
        real_store(self, *args)  # type: ignore[arg-type]

    monkeypatch.setattr(shared_memory.MemoryStore, "__init__", counted)
    monkeypatch.setattr(shared_memory, "free_space", lambda: need - 1)
    with pytest.raises(ConfigError, match=r"\(train .* \+ val .* \+ test .*\), but /dev/shm has"):
        build(_options(folder), seed=0)
    assert made == []
    monkeypatch.setattr(shared_memory, "free_space", lambda: need)
    bundle = build(_options(folder), seed=0)
    assert [len(getattr(bundle, s)) for s in ("train", "val", "test")] == [21, 3, 6] and len(made) == 3
    monkeypatch.setenv("LOCAL_WORLD_SIZE", "2")  # a second rank on this node doubles the need
    with pytest.raises(ConfigError, match=r"times 2 ranks on this node"):
        build(_options(folder), seed=0)
    monkeypatch.setattr(shared_memory, "free_space", lambda: 2 * need)
    build(_options(folder), seed=0)


@pytest.fixture(scope="module")
def memory_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A run trained one epoch with data.image.cache: memory."""
    from kiln.config.loader import load_config
    from kiln.train import Trainer

    root = tmp_path_factory.mktemp("memory-run")
    photos = write_digits_folder(root / "photos", classes=3, per_class=10, size=20)
    cfg = load_config(None, [
        "run.progress=false", "data.name=image_folder", f"data.path={photos}", f"data.image.size={SIZE}",
        "data.image.cache=memory", "model.name=cnn", "model.filters=[4]", "model.hidden=[8]",
        "training.epochs=1", "training.batch_size=8", f"run.output_dir={root / 'runs'}",
        "tracking.backends=[jsonl]", "checkpoint.enabled=false",
    ])
    return Path(Trainer(cfg, quiet=True).fit().run_dir)


def test_eval_and_export_samples_make_no_memory_cache(memory_run: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """With no shared memory free at all, eval of one split and export's parity samples of a
    cache: memory run still read its data: they make (and count) no store, the training
    split's included, while a build for training is refused."""
    from kiln.config.loader import load_config
    from kiln.eval.run_eval import evaluate_run
    from kiln.export.samples import held_out_inputs
    from kiln.models.package import load_package

    monkeypatch.setattr(shared_memory, "free_space", lambda: 0)
    result = evaluate_run(memory_run, "test", plots=False, cost=False)
    assert result.metrics["test_samples"] == 6
    inputs, source = held_out_inputs(memory_run, load_package(memory_run).spec, 4)
    assert source == "test split (4 samples)" and inputs.shape == (4, 3, SIZE, SIZE)
    cfg = load_config(memory_run / "config.yaml")
    with pytest.raises(ConfigError, match=r"data\.image\.cache: memory needs"):
        build(cfg.data, seed=0)  # type: ignore[arg-type]


def test_stores_larger_than_the_memory_there_is_are_refused_even_when_dev_shm_has_room(
        monkeypatch: pytest.MonkeyPatch) -> None:
    """/dev/shm may be sized past the machine's memory (here: a 24 GiB tmpfs on 23 GiB); filling
    it got the run SIGKILLed by the out-of-memory killer with no message. Refused instead."""
    monkeypatch.delenv("LOCAL_WORLD_SIZE", raising=False)
    monkeypatch.delenv("WORLD_SIZE", raising=False)
    sizes = {"train": 30 * MiB, "val": 10 * MiB}
    check_shared_memory(sizes, free=100 * MiB, memory=50 * MiB)  # exactly enough: 80 % of it
    with pytest.raises(ConfigError, match=r"needs 40\.0 MiB .* 49\.0 MiB of memory available.*out-of-memory"):
        check_shared_memory(sizes, free=100 * MiB, memory=49 * MiB)
    check_shared_memory(sizes, free=100 * MiB, memory=available_memory())  # this machine has 50 MiB
