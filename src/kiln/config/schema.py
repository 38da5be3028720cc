"""The config schema: every section, every knob and every default of kiln, in one place.

Defaults live here and only here; the rest of kiln reads validated fields, never ``.get(key, default)``.
"""

from __future__ import annotations

import warnings
from pathlib import Path
from typing import Annotated, Literal

from pydantic import AfterValidator, Field, SerializeAsAny, WrapValidator, model_validator

# TRACKERS, not kiln.tracking: that sits above the config (see kiln.config.catalogs).
from kiln.config.catalogs import TRACKERS
from kiln.config.changes import LENGTH, LOGISTICS, MACHINE  # what a change does to a run begun
from kiln.config.data_options import DataConfig, DigitsOptions
from kiln.config.entries import DATA, MODEL
from kiln.config.model_options import BackboneOptions, MlpOptions, ModelConfig, TargetModel
from kiln.config.section import Section
from kiln.config.vision_defaults import fill_image_defaults
from kiln.errors import ConfigError

# `model:` and `data:` are unions on `name` of the catalog entries' options models (one per entry,
# each with its own knobs, defaults and descriptions: kiln.config.model_options and data_options),
# plus TargetModel/TargetData for your own code by import path; kiln.config.entries validates them
# against the catalogs as they are when a config is validated. Typed as their bases: narrow with
# isinstance to read an entry's own knobs. SerializeAsAny: a dump holds the entry's own keys.
DataSection = Annotated[SerializeAsAny[DataConfig], WrapValidator(DATA.wrap), DATA]
ModelSection = Annotated[SerializeAsAny[ModelConfig], WrapValidator(MODEL.wrap), MODEL]


class RunConfig(Section):
    name: str = "kiln"  # prefix of the run directory name: runs/<name>_<YYYYmmdd_HHMMSS>/
    experiment: str | None = None  # MLflow experiment; null: the run name
    output_dir: Annotated[Path, MACHINE] = Path("runs")  # parent of every run directory
    # the run directory itself, fixed (kiln train --run-dir): the same command run again resumes
    # it, starts it over from step 0 when it has no checkpoint yet, or exits 0 when it finished;
    # null: a new <output_dir>/<name>_<YYYYmmdd_HHMMSS>/ for every run (docs/preemption.md)
    dir: Annotated[Path | None, MACHINE] = None
    seed: int = 42  # seeds Python, NumPy and torch, and the data split and order
    deterministic: bool = False  # torch deterministic algorithms: identical runs, a little slower
    device: Annotated[Literal["auto", "cpu", "cuda", "mps"], MACHINE] = "auto"  # auto: cuda, then mps, then cpu
    progress: Annotated[bool, LOGISTICS] = True  # rich progress bar (only shown when stdout is a terminal)
    # Linux (glibc): keep memory freed between steps for reuse instead of page-faulting it in
    # again every step (the reference CNN's CPU epochs: 12 % faster); resident size stays at its peak
    keep_freed_memory: bool = True
    # CPU: treat denormal floats (under 1.2e-38) as zero while training; late in a run Adam's
    # state decays into them and epochs slowed 3x (bench/README.md); zero trains as well
    flush_denormal: bool = True
    # CUDA (Ampere and later): fp32 matmuls and convolutions on TensorFloat-32 tensor cores, about
    # 10 bits of mantissa for several times the speed; no effect elsewhere. Recorded in summary.json
    tf32: bool = True


class SchedulerConfig(Section):
    name: Literal["none", "reduce_on_plateau", "cosine", "step", "warmup_cosine"] = "none"
    monitor: str = "val_loss"  # reduce_on_plateau: the epoch metric watched
    mode: Literal["min", "max"] = "min"  # reduce_on_plateau: whether lower or higher is better
    factor: float = Field(0.1, gt=0, lt=1)  # reduce_on_plateau: lr multiplier on a plateau
    patience: int = Field(5, ge=0)  # reduce_on_plateau: epochs without improvement to wait
    min_lr: float = Field(0.0, ge=0)  # floor for reduce_on_plateau; final lr for cosine schedules
    step_size: int = Field(10, ge=1)  # step: epochs between decays
    gamma: float = Field(0.1, gt=0)  # step: lr multiplier per decay
    warmup_steps: int = Field(0, ge=0)  # warmup_cosine: optimizer steps of linear warm-up


class EarlyStoppingConfig(Section):
    monitor: str = "val_loss"  # the epoch metric watched, e.g. val_loss or val_accuracy
    mode: Literal["min", "max"] = "min"  # whether lower or higher is better
    patience: int = Field(5, ge=1)  # epochs without improvement before stopping
    min_delta: float = Field(0.0, ge=0)  # smallest change that counts as an improvement
    restore_best_weights: bool = True  # roll the model back to the best epoch when training ends


class LossConfig(Section):
    # auto: cross_entropy for classification, bce for binary, mse for regression
    name: Literal["auto", "cross_entropy", "focal", "bce", "mse", "mae"] = "auto"
    label_smoothing: float = Field(0.0, ge=0, lt=1)  # cross_entropy only
    # cross_entropy/focal: one weight per class, or auto (inverse class frequency in the training split)
    class_weights: list[float] | Literal["auto"] | None = None
    focal_gamma: float = Field(2.0, ge=0)  # focal only: down-weights easy examples


class TrainingConfig(Section):
    epochs: Annotated[int, LENGTH] = Field(10, ge=1)  # maximum epochs (early stopping may end sooner)
    batch_size: int = Field(64, ge=1)  # samples per step (per process)
    eval_batch_size: Annotated[int, LOGISTICS] = Field(512, ge=1)  # batch size for validation and test
    optimizer: Literal["adam", "adamw", "sgd"] = "adam"
    lr: float = Field(1e-3, gt=0)  # learning rate (before any schedule)
    weight_decay: float = Field(0.0, ge=0)  # decoupled for adamw, coupled L2 for adam/sgd
    momentum: float = Field(0.9, ge=0, lt=1)  # sgd only
    nesterov: bool = False  # sgd only
    betas: tuple[float, float] = (0.9, 0.999)  # adam/adamw
    l2: float = Field(0.0, ge=0)  # penalty l2 * sum(w**2) over weight matrices (Keras kernel L2)
    scheduler: SchedulerConfig = Field(default_factory=SchedulerConfig)
    grad_clip: float | None = Field(None, gt=0)  # clip the global gradient norm to this value
    grad_accum: int = Field(1, ge=1)  # micro-batches accumulated per optimizer step
    max_steps: Annotated[int | None, LENGTH] = Field(None, ge=1)  # stop after N optimizer steps (epochs then ignored)
    eval_every_n_steps: int | None = Field(None, ge=1)  # also validate every N steps (null: epochs only)
    eval_batches: int | None = Field(None, ge=1)  # validation batches per evaluation (null: all)
    # the forward pass's dtype: bf16 and fp16 autocast it (fp16 with a loss scaler whose state is
    # checkpointed); auto: bf16 where the device supports it, else fp16 on CUDA, fp32 on CPU/MPS
    precision: Literal["fp32", "bf16", "fp16", "auto"] = "fp32"
    # torch.compile the module the loop trains (false: eager); checkpoints and the saved model are
    # the uncompiled module's. A model that fails to compile trains eagerly (said in the log and
    # summary.json). Bit-exact repeats and resumes are promised for eager runs only
    compile: Literal[False, "default", "reduce-overhead", "max-autotune"] = False
    early_stopping: EarlyStoppingConfig | None = None  # off unless given (e.g. ...patience=5)
    loss: LossConfig = Field(default_factory=LossConfig)
    # Fine-tuning a torchvision/timm backbone. With model.freeze: backbone, the first N epochs
    # train the head only, then the backbone trains too (0-based: the epoch where it starts);
    # null: frozen throughout. Checkpointed, so a resume across that epoch is exact.
    unfreeze_at_epoch: int | None = Field(None, ge=1)
    # the backbone's lr is lr x this, the head's is lr (discriminative fine-tuning, e.g. 0.1)
    backbone_lr_scale: float = Field(1.0, gt=0)


class CheckpointConfig(Section):
    enabled: bool = True  # write checkpoints into <run>/checkpoints/ (needed by `kiln resume`)
    monitor: str = "val_loss"  # the epoch metric that ranks checkpoints for keep_best_n
    mode: Literal["min", "max"] = "min"  # whether lower or higher is better
    keep_best_n: Annotated[int, LOGISTICS] = Field(1, ge=1)  # best checkpoints kept by the monitored metric
    keep_last_n: Annotated[int, LOGISTICS] = Field(1, ge=1)  # newest checkpoints kept (the newest is always kept)
    every_n_epochs: Annotated[int | None, LOGISTICS] = Field(1, ge=1)  # save at the end of every N-th epoch (null: never)
    every_n_steps: Annotated[int | None, LOGISTICS] = Field(None, ge=1)  # also save every N optimizer steps, mid-epoch
    save_last: Annotated[bool, LOGISTICS] = True  # save when training ends, so a longer resume can continue from there
    async_save: Annotated[bool, LOGISTICS] = False  # copy state on the training thread, write it on a background thread


class RegisterConfig(Section):
    name: str  # registered model name in the MLflow model registry
    alias: str | None = None  # alias given to the new version when every gate passes, e.g. staging
    require: list[str] = Field(default_factory=list)  # gates such as "test_accuracy>=0.98"


class WandbConfig(Section):
    # Weights & Biases (backend `wandb`, extra kiln-ml[wandb]). offline: records go to
    # <run>/logs/wandb/ only, for `wandb sync` later; online needs `wandb login` or WANDB_API_KEY.
    mode: Literal["offline", "online"] = "offline"
    project: str | None = None  # null: run.experiment, else run.name
    entity: str | None = None  # team or user; null: the logged-in default


def _known_tracker(name: str) -> str:
    if name not in TRACKERS:
        raise ValueError(TRACKERS.unknown_message(name))
    return name


# A name in the TRACKERS catalog (kiln.config.catalogs), checked with a did-you-mean.
Backend = Annotated[str, AfterValidator(_known_tracker)]
DEFAULT_BACKENDS: tuple[str, ...] = ("jsonl", "csv", "tensorboard", "mlflow")


# `register` is the documented key, though it shadows BaseModel.register (an ABC classmethod nobody
# calls on configs); pydantic warns about that when the class is created, harmlessly. The warning
# is silenced for that moment only: importing kiln installs no warnings filter.
with warnings.catch_warnings():
    warnings.filterwarnings("ignore", message='Field name "register" in "TrackingConfig" shadows')

    class TrackingConfig(Section):
        # jsonl (<run>/logs/events.jsonl) is always written first: it is the source of truth.
        # csv, tensorboard and wandb (offline) write under <run>/logs/; mlflow logs to `uri`.
        backends: list[Backend] = Field(default_factory=lambda: list(DEFAULT_BACKENDS))
        # MLflow tracking URI; null: $MLFLOW_TRACKING_URI, else sqlite:///<output_dir>/mlflow.db
        uri: str | None = None
        system_metrics: bool = True  # sample CPU/RAM (and GPU) use in the background into every tracker
        system_metrics_interval: float = Field(10.0, gt=0)  # seconds between system samples
        log_model: bool = True  # log the model to MLflow (pytorch flavor, signature, input example)
        # seconds trackers get to catch up at exit; MLflow's detached finisher gets this long after
        # the prompt returns (past it, what is left stays in events.jsonl for `kiln sync`)
        close_timeout: float = Field(60.0, gt=0)
        # seconds MLflow's worker only collects records before it imports MLflow and opens the run:
        # a shorter run pays nothing for MLflow while it trains (all is sent after the prompt); a
        # longer one appears in the MLflow UI this long after its start. 0: from the start.
        mlflow_start_delay: float = Field(30.0, ge=0)
        register: RegisterConfig | None = None  # register the model at the end of training
        log_every_n_steps: int = Field(50, ge=1)  # training loss and lr logged every N optimizer steps
        queue_size: int = Field(10_000, ge=1)  # records buffered for slow trackers before dropping
        wandb: WandbConfig = Field(default_factory=WandbConfig)  # used when `wandb` is in backends


class GateConfig(Section):
    # criteria `kiln gate` checks when no --require is given, e.g. "test_accuracy>=0.98",
    # "latency_p99_ms<100", "size_mb<10", "min_class_recall>=0.95"
    require: list[str] = Field(default_factory=list)


class DistributedConfig(Section):
    # Read only when several processes train one run (kiln train --nproc N, or torchrun).
    # k below = effective batch / (training.batch_size x grad_accum): the growth of the batch
    # over a single-process run of the same config (k = world size for per_process, 1 for global).
    batch_size: Literal["per_process", "global"] = "per_process"  # training.batch_size is per process, or split across processes
    lr_scaling: Literal["none", "linear", "sqrt"] = "none"  # lr x k (linear, Goyal et al.) or x sqrt(k)
    # backend and timeout: which library carries the collectives and how long one waits: same maths
    backend: Annotated[Literal["auto", "gloo", "nccl"], LOGISTICS] = "auto"  # auto: nccl when CUDA is used, gloo on CPU
    timeout: Annotated[float, LOGISTICS] = Field(300.0, gt=0)  # seconds a collective waits for a missing rank before failing


class KilnConfig(Section):
    """The whole resolved config of one run."""

    run: RunConfig = Field(default_factory=RunConfig)
    data: DataSection = Field(default_factory=DigitsOptions)  # see `kiln datasets`
    model: ModelSection = Field(default_factory=MlpOptions)  # see `kiln models`
    training: TrainingConfig = Field(default_factory=TrainingConfig)
    checkpoint: CheckpointConfig = Field(default_factory=CheckpointConfig)
    tracking: Annotated[TrackingConfig, LOGISTICS] = Field(default_factory=TrackingConfig)  # all of it: where records go
    gate: GateConfig = Field(default_factory=GateConfig)
    distributed: DistributedConfig = Field(default_factory=DistributedConfig)

    @model_validator(mode="after")
    def _fine_tuning_and_weights(self) -> KilnConfig:
        """Fine-tuning knobs need a backbone model; pretrained weights fill ``data.image``'s unset
        fields with their own preprocessing (kiln.config.vision_defaults)."""
        _check_fine_tuning(self.model, self.training)
        fill_image_defaults(self.model, self.data)
        return self


def _check_fine_tuning(model: ModelConfig, training: TrainingConfig) -> None:
    backbone = isinstance(model, BackboneOptions)
    frozen = isinstance(model, BackboneOptions) and model.freeze == "backbone"
    if training.unfreeze_at_epoch is not None and not frozen:
        raise ConfigError(
            "training.unfreeze_at_epoch unfreezes a frozen backbone, but the model has none",
            field="training.unfreeze_at_epoch",
            hint="set model.freeze: backbone (model.name torchvision or timm), or unset training.unfreeze_at_epoch",
        )
    # your own model (model.target) may mark a backbone itself: checked when the optimizer is built
    if training.backbone_lr_scale != 1.0 and not (backbone or isinstance(model, TargetModel)):
        raise ConfigError(
            f"training.backbone_lr_scale scales a backbone's learning rate, but model {model.name!r} has no backbone",
            field="training.backbone_lr_scale",
            hint="use model.name torchvision or timm, or unset training.backbone_lr_scale",
        )
