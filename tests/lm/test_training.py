"""The language-model track trains through the ordinary pipeline and learns the pattern."""

from __future__ import annotations

import json
import math
from pathlib import Path

import torch

from kiln.runs import read_summary
from kiln.tracking import read_events
from kiln.train import Callback, TrainState


def step_metrics(run_dir: Path) -> list[tuple[int, dict[str, float]]]:
    return [(r["step"], r["metrics"]) for r in read_events(run_dir / "logs/events.jsonl")
            if r["event"] == "metrics" and r["scope"] == "step"]


def test_validation_loss_falls_well_below_uniform_guessing(trained: Path) -> None:
    summary = read_summary(trained)
    vocab = json.loads((trained / "models/model.json").read_text())["class_names"]
    uniform = math.log(len(vocab))
    evals = [m for _, m in step_metrics(trained) if "val_loss" in m]
    assert len(evals) == 3  # steps 40, 80, 120
    assert evals[0]["val_loss"] < uniform
    assert evals[-1]["val_loss"] < 0.25 * uniform, (evals[-1]["val_loss"], uniform)
    assert summary.final["val_loss"] < 0.25 * uniform
    assert summary.final["val_perplexity"] == math.exp(summary.final["val_loss"])
    assert summary.test["test_loss"] < 0.25 * uniform
    assert summary.global_step == 120 and summary.status == "completed"


def test_every_evaluation_logs_throughput_and_a_sample(trained: Path) -> None:
    evals = [(s, m) for s, m in step_metrics(trained) if "val_loss" in m]
    assert [s for s, _ in evals] == [40, 80, 120]
    for _, m in evals:
        assert m["tokens_per_sec"] > 0 and math.isclose(m["tokens_per_sec"], 16 * m["samples_per_sec"])
        assert set(m) >= {"val_perplexity", "val_accuracy"}
    lines = (trained / "logs/samples.jsonl").read_text().splitlines()
    samples = [json.loads(line) for line in lines]
    assert [s["step"] for s in samples] == [40, 80, 120]
    assert all(s["text"].startswith(s["prompt"]) and len(s["text"]) == len(s["prompt"]) + 200 for s in samples)
    assert "cat sat on the mat" in samples[-1]["text"][len(samples[-1]["prompt"]):]


def test_warmup_cosine_lr_and_clipped_grad_norm_are_logged_every_step(trained: Path) -> None:
    steps = [(s, m) for s, m in step_metrics(trained) if "lr" in m]
    assert [s for s, _ in steps] == list(range(1, 121))  # tracking.log_every_n_steps=1
    lrs = [m["lr"] for _, m in steps]
    assert lrs[:10] == sorted(lrs[:10]) and math.isclose(max(lrs), 3e-3)  # linear warm-up to lr
    assert lrs[10:] == sorted(lrs[10:], reverse=True) and lrs[-1] < 1e-4  # cosine decay to ~0
    norms = [m["grad_norm"] for _, m in steps]
    assert all(n > 0 for n in norms) and max(norms) > 1.0  # above the clip: logged before clipping


class PreClipNorms(Callback):
    """The global gradient norm of each step as backward left it, before any clipping."""

    def __init__(self) -> None:
        self.grads: dict[str, torch.Tensor] = {}
        self.norms: dict[int, float] = {}

    def on_fit_start(self, state: TrainState) -> None:
        for name, p in state.model.named_parameters():
            p.register_post_accumulate_grad_hook(lambda p, name=name: self._keep(name, p))

    def _keep(self, name: str, p: torch.Tensor) -> None:
        assert p.grad is not None
        self.grads[name] = p.grad.detach().clone()

    def on_batch_end(self, state: TrainState) -> None:
        if state.optimizer_stepped:
            self.norms[state.global_step] = math.sqrt(sum(float(g.double().pow(2).sum()) for g in self.grads.values()))
        self.grads = {}


def test_the_logged_grad_norm_is_the_norm_before_clipping(tmp_path: Path) -> None:
    """README: with training.grad_clip, the pre-clip gradient norm is logged. Clip at 0.05, far
    below every step's norm: a post-clip figure would read 0.05 at every step."""
    from kiln.train import Trainer
    from tests.lm.conftest import lm_config, write_text

    max_norm = 0.05
    probe = PreClipNorms()
    cfg = lm_config(tmp_path / "runs", write_text(tmp_path, repeats=40), "training.max_steps=5",
                    "training.eval_every_n_steps=5", "training.eval_batches=1", f"training.grad_clip={max_norm}",
                    backends=("jsonl",))
    result = Trainer(cfg, callbacks=[probe], quiet=True).fit()
    logged = {s: m["grad_norm"] for s, m in step_metrics(result.run_dir) if "grad_norm" in m}
    assert sorted(logged) == sorted(probe.norms) == [1, 2, 3, 4, 5]
    for step, norm in probe.norms.items():
        assert norm > 10 * max_norm, (step, norm)
        assert math.isclose(logged[step], norm, rel_tol=1e-5), (step, logged[step], norm)


def test_the_package_holds_the_vocabulary(trained: Path) -> None:
    meta = json.loads((trained / "models/model.json").read_text())
    assert meta["task"] == "language_modeling"
    assert "".join(meta["class_names"]) == "".join(sorted(set("the cat sat on the mat. ")))
    assert meta["input_signature"] == {"shape": [None, 16], "dtype": "int64"}


def test_the_shipped_config_trains_on_a_given_text(tmp_path: Path) -> None:
    """configs/char_transformer.yaml is coherent (data, model and schedule fit together)."""
    from kiln.config import load_config
    from kiln.train import Trainer
    from tests.lm.conftest import write_text

    root = Path(__file__).resolve().parents[2]
    cfg = load_config(root / "configs/char_transformer.yaml", [
        f"data.path={write_text(tmp_path, repeats=40)}", f"run.output_dir={tmp_path / 'runs'}",
        "run.progress=false", "training.max_steps=4", "training.eval_every_n_steps=2",
        "training.eval_batches=1", "tracking.backends=[jsonl]", "tracking.system_metrics=false",
    ])
    assert cfg.data.path == tmp_path / "pattern.txt"
    result = Trainer(cfg, quiet=True).fit()
    assert result.status == "completed" and result.summary.global_step == 4
    assert len((result.run_dir / "logs/samples.jsonl").read_text().splitlines()) == 2


def test_kiln_eval_reports_perplexity_and_cost(trained: Path) -> None:
    from kiln.eval.run_eval import evaluate_run

    result = evaluate_run(trained, "test", [], plots=False, cost=True)
    assert math.isclose(result.metrics["test_perplexity"], math.exp(result.metrics["test_loss"]))
    assert result.cost["latency_p50_ms"] > 0 and result.cost["parameters"] > 0
