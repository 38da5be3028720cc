"""The sweep file: what to search (dotted config paths and their ranges), how, and where to keep it.

>>> spec = SweepSpec.model_validate({
...     "method": "grid", "metric": "val_accuracy", "direction": "maximize",
...     "parameters": {"training.lr": {"choice": [1e-3, 1e-2]}, "model.dropout": {"choice": [0.1, 0.3]}},
... })
>>> spec.budget()
4

Every default of a sweep lives here. Parameter paths and values are checked against the config
schema by :func:`kiln.sweep.paths.resolve_parameters` before any trial starts.
"""

from __future__ import annotations

import json
import math
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Annotated, Any, Literal, Protocol

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from kiln.catalog import did_you_mean
from kiln.errors import ConfigError

_NAME = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]*$")
Scalar = (str, int, float, bool, type(None))


class _Trial(Protocol):  # the part of optuna.Trial a parameter uses (optuna is imported lazily)
    def suggest_categorical(self, name: str, choices: Any) -> Any: ...
    def suggest_float(self, name: str, low: float, high: float, *, step: float | None = None,
                      log: bool = False) -> float: ...
    def suggest_int(self, name: str, low: int, high: int, *, step: int = 1, log: bool = False) -> int: ...


class _Section(BaseModel):
    model_config = ConfigDict(extra="forbid", frozen=True, populate_by_name=True)


class ParameterSpec(_Section):
    """One searched value: exactly one of ``choice``, ``uniform``, ``loguniform`` or ``int``.

    ``choice`` values that are lists or mappings (``model.hidden``) travel through Optuna as JSON
    strings, since Optuna's categorical values must be scalars.
    """

    choice: list[Any] | None = None  # the values to try, e.g. [16, 32, 64]
    uniform: tuple[float, float] | None = None  # [low, high], sampled uniformly
    loguniform: tuple[float, float] | None = None  # [low, high], sampled uniformly in log space
    int_: tuple[int, int] | None = Field(None, alias="int")  # [low, high], both included
    step: float | None = Field(None, gt=0)  # uniform / int: only values low + k * step

    @model_validator(mode="after")
    def _one_kind(self) -> ParameterSpec:
        kinds = [k for k in ("choice", "uniform", "loguniform", "int_") if getattr(self, k) is not None]
        if len(kinds) != 1:
            got = ", ".join(k.rstrip("_") for k in kinds) or "none"
            raise ValueError(f"give exactly one of choice, uniform, loguniform, int (got {got})")
        if self.choice is not None:
            if not self.choice:
                raise ValueError("choice needs at least one value")
            encoded = [self.encode(v) for v in self.choice]
            if len(set(map(json.dumps, encoded))) != len(encoded):
                raise ValueError(f"choice has repeated values: {self.choice}")
        bounds = self.uniform or self.loguniform or self.int_
        if bounds is not None and not bounds[0] <= bounds[1]:
            raise ValueError(f"low must not exceed high, got [{bounds[0]}, {bounds[1]}]")
        if self.loguniform is not None and self.loguniform[0] <= 0:
            raise ValueError(f"loguniform needs low > 0, got {self.loguniform[0]}")
        if self.step is not None and self.kind not in ("uniform", "int"):
            raise ValueError(f"step applies to uniform and int ranges only, not to {self.kind}")
        if self.kind == "int" and self.step is not None and self.step != int(self.step):
            raise ValueError(f"an int range needs a whole step, got {self.step}")
        return self

    @property
    def kind(self) -> str:
        if self.choice is not None:
            return "choice"
        if self.int_ is not None:
            return "int"
        return "uniform" if self.uniform is not None else "loguniform"

    @property
    def _structured(self) -> bool:
        return self.choice is not None and not all(isinstance(v, Scalar) for v in self.choice)

    def encode(self, value: Any) -> Any:
        """The value as Optuna stores it (a JSON string for lists and mappings)."""
        return value if isinstance(value, Scalar) else json.dumps(value)

    def decode(self, value: Any) -> Any:
        """The config value for what Optuna stored."""
        return json.loads(value) if self._structured and isinstance(value, str) else value

    def suggest(self, trial: _Trial, name: str) -> Any:
        """Ask ``trial`` for this parameter and return the config value."""
        if self.choice is not None:
            return self.decode(trial.suggest_categorical(name, [self.encode(v) for v in self.choice]))
        if self.int_ is not None:
            return trial.suggest_int(name, self.int_[0], self.int_[1], step=int(self.step or 1))
        if self.uniform is not None:
            return trial.suggest_float(name, *self.uniform, step=self.step)
        assert self.loguniform is not None
        return trial.suggest_float(name, *self.loguniform, log=True)

    def grid(self) -> list[Any] | None:
        """Every value (as Optuna stores it) when the set is finite, else None."""
        if self.choice is not None:
            return [self.encode(v) for v in self.choice]
        if self.int_ is not None:
            return list(range(self.int_[0], self.int_[1] + 1, int(self.step or 1)))
        if self.uniform is not None and self.step is not None:
            low, high = self.uniform
            count = math.floor((high - low) / self.step + 1e-9) + 1
            return [round(low + i * self.step, 12) for i in range(count)]
        return None

    def candidates(self) -> list[Any]:
        """Config values checked against the schema: every choice, or both ends of a range."""
        if self.choice is not None:
            return list(self.choice)
        bounds = self.uniform or self.loguniform or self.int_
        assert bounds is not None
        return list(bounds)


class PrunerSpec(_Section):
    """Stops unpromising trials early from the metric reported after every epoch."""

    name: Literal["none", "median", "hyperband"] = "none"
    n_startup_trials: int = Field(5, ge=0)  # median: finished trials before any pruning
    n_warmup_steps: int = Field(1, ge=0)  # median: epochs of a trial that are never pruned
    min_resource: int = Field(1, ge=1)  # hyperband: epochs every trial gets
    reduction_factor: int = Field(3, ge=2)  # hyperband: 1/reduction_factor go on per rung


class HeartbeatSpec(_Section):
    """How a trial whose worker died is noticed (no heartbeat for grace_period s) and retried."""

    interval: int = Field(10, ge=1)  # seconds between heartbeats of a running trial
    grace_period: int = Field(60, ge=2)  # seconds without a heartbeat before a trial is failed
    max_retries: int = Field(2, ge=0)  # retries of a trial whose worker died

    @model_validator(mode="after")
    def _grace_exceeds_interval(self) -> HeartbeatSpec:
        if self.grace_period <= self.interval:
            raise ValueError(
                f"grace_period ({self.grace_period} s) must exceed interval ({self.interval} s), "
                "or live trials would be failed between two heartbeats"
            )
        return self


class SweepSpec(_Section):
    """A whole sweep file."""

    method: Literal["grid", "random", "tpe"]
    metric: str = "val_loss"  # an epoch metric (val_*, train_*) or a test_* metric
    direction: Literal["minimize", "maximize"] = "minimize"
    n_trials: int | None = Field(None, ge=1)  # total over all workers and machines; grid: its size
    timeout: float | None = Field(None, gt=0)  # seconds after which no new trial starts (per run)
    pruner: PrunerSpec = Field(default_factory=PrunerSpec)  # or just its name: none, median, ...
    parameters: dict[str, ParameterSpec] = Field(min_length=1)  # dotted config path -> values
    storage: str | None = None  # Optuna storage URL; null: <output_dir>/sweeps/<study>/study.db
    study_name: str | None = None  # null: <run.name>-<sweep file name>
    # trials run at once on this machine (separate processes); auto: one per visible GPU (each
    # pinned with CUDA_VISIBLE_DEVICES), 1 on a machine without CUDA
    workers: Annotated[int, Field(ge=1)] | Literal["auto"] = 1
    gpus_per_worker: int = Field(1, ge=1)  # GPUs each worker sees, when GPUs are visible
    seed: int | None = None  # sampler seed (worker k uses seed + k); null: fresh randomness
    heartbeat: HeartbeatSpec = Field(default_factory=HeartbeatSpec)

    @field_validator("pruner", mode="before")
    @classmethod
    def _pruner_by_name(cls, value: Any) -> Any:
        return {"name": value} if isinstance(value, str) else value

    @field_validator("study_name")
    @classmethod
    def _safe_name(cls, value: str | None) -> str | None:
        if value is not None and not _NAME.match(value):
            raise ValueError("use letters, digits, '_', '.' and '-' (it names a directory)")
        return value

    @model_validator(mode="after")
    def _consistent(self) -> SweepSpec:
        if self.method == "grid":
            infinite = [p for p, s in self.parameters.items() if s.grid() is None]
            if infinite:
                raise ValueError(
                    f"method grid needs finite values, but {', '.join(infinite)} "
                    "uses a continuous range; use choice: [...], an int range, uniform with a "
                    "step, or method random / tpe"
                )
            size = self.grid_size()
            if self.n_trials is not None and self.n_trials > size:
                raise ValueError(
                    f"n_trials={self.n_trials} exceeds the grid's {size} points; every point "
                    "runs once, so leave n_trials out (or lower it)"
                )
        elif self.n_trials is None and self.timeout is None:
            raise ValueError(f"method {self.method} needs n_trials or timeout (or both)")
        if self.pruner.name != "none" and self.metric.startswith("test_"):
            raise ValueError(
                f"pruner {self.pruner.name} needs a metric reported every epoch, but {self.metric} "
                "is only known at the end; use a val_* metric, or pruner: none"
            )
        return self

    def grid_size(self) -> int:
        return math.prod(len(s.grid() or ()) for s in self.parameters.values())

    def budget(self) -> int | None:
        """Trials to run in total (None: until the timeout)."""
        if self.n_trials is not None:
            return self.n_trials
        return self.grid_size() if self.method == "grid" else None

    def search_space(self) -> dict[str, Any]:
        """What must not change when a study is resumed."""
        dump = self.model_dump(mode="json", by_alias=True, exclude_none=True)
        return {k: dump[k] for k in ("method", "metric", "direction", "parameters")}


def load_sweep(path: str | Path, **replace: Any) -> SweepSpec:
    """Read and validate a sweep file; ``replace`` sets fields from the command line (None: keep)."""
    path = Path(path).expanduser()
    if not path.is_file():
        raise ConfigError(f"sweep file not found: {path}. Check the path passed to -s.")
    try:
        raw = yaml.safe_load(path.read_text(encoding="utf-8"))
    except yaml.YAMLError as exc:
        raise ConfigError(f"YAML error in sweep file {path}: {exc}") from None
    if not isinstance(raw, dict):
        raise ConfigError(f"sweep file {path} must hold a mapping (method:, parameters:, ...)")
    raw.update({k: v for k, v in replace.items() if v is not None})
    return parse_sweep(raw, str(path))


def parse_sweep(raw: Mapping[str, Any], source: str = "sweep") -> SweepSpec:
    """Validate a sweep mapping, reporting every problem at once with a did-you-mean."""
    try:
        return SweepSpec.model_validate(dict(raw))
    except ValidationError as exc:
        problems = [_describe(err) for err in exc.errors()]
        lines = "\n".join(f"  - {p}" for p in problems)
        raise ConfigError(f"invalid sweep file ({source}), {len(problems)} problem(s):\n{lines}") from None


def _describe(err: Any) -> str:
    loc = [str(part) for part in err["loc"]]
    where = ".".join(loc) or "(top level)"
    if loc[:1] == ["parameters"] and len(loc) > 1:
        where = f"parameters[{loc[1]!r}]" + "".join(f".{p}" for p in loc[2:])
    if err["type"] == "extra_forbidden":
        allowed = _allowed(loc[:-1])
        return f"{where}: unknown key.{did_you_mean(loc[-1], allowed)} Allowed here: {', '.join(allowed)}"
    if err["type"] == "missing":
        return f"{where}: required, but missing"
    message = str(err["msg"]).removeprefix("Value error, ")
    if not loc:  # a check across fields: the input is the whole file
        return message
    return f"{where}: {message} (received {str(err.get('input'))[:60]!r})"


def _allowed(loc: list[str]) -> list[str]:
    model: type[BaseModel] = SweepSpec
    if loc[:1] == ["parameters"]:
        return ["choice", "uniform", "loguniform", "int", "step"]
    sections: dict[str, type[BaseModel]] = {"pruner": PrunerSpec, "heartbeat": HeartbeatSpec}
    for part in loc:
        inner = sections.get(part)
        if inner is None:
            return []
        model = inner
    return sorted(model.model_fields)
