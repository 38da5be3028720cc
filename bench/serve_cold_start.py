"""Serving without torch (issue 22): the installed size of the serving environment that
``kiln package`` pins, against this one, and the cold start of ``kiln serve`` in it, from process
start to the first 200 from ``/ready``.

    .venv/bin/python bench/serve_cold_start.py               # the figures in bench/README.md
    .venv/bin/python bench/serve_cold_start.py --starts 11   # more starts

It trains configs/mnist_cnn_enhanced.yaml's model for one epoch on synthetic 28x28 data (the
architecture, not the accuracy, sets the load time; MNIST need not be on the machine), exports it
to ONNX with parity, packages it, installs the context into a fresh virtual environment as its
Dockerfile does (requirements.txt, then kiln's wheel with --no-deps), and starts the server there
``--starts`` times; then as many times from this (torch-installed) environment, for comparison.
Markdown on stdout, notes on stderr; the work folder is kept under bench/results/.
"""

from __future__ import annotations

import argparse
import json
import os
import signal
import statistics
import subprocess
import sys
import time
import urllib.error
import urllib.request
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
OVERRIDES = (
    "data.name=synthetic", "data.synthetic.input_shape=[1,28,28]", "data.synthetic.num_classes=10",
    "data.synthetic.n_samples=2000", "training.epochs=1", "tracking.backends=[jsonl]",
    "checkpoint.enabled=false",
)


def note(text: str) -> None:
    print(text, file=sys.stderr, flush=True)


def build(work: Path) -> tuple[Path, Path]:
    """The trained, exported run and its build context."""
    import kiln
    from kiln.export.run import ExportOptions, export_run
    from kiln.package import package_model

    config = kiln.load_config(ROOT / "configs" / "mnist_cnn_enhanced.yaml",
                              [*OVERRIDES, f"run.output_dir={work / 'runs'}"])
    run = kiln.Trainer(config, quiet=True).fit().run_dir
    assert export_run(run, ExportOptions(formats=("onnx",), mlflow=False)).passed
    context = work / "image"
    package_model(run, context, force=True)
    return run, context


def install(context: Path, venv: Path) -> None:
    env = clean_env(venv)
    subprocess.run([sys.executable, "-m", "venv", "--clear", str(venv)], check=True, env=env)
    pip = [str(venv / "bin" / "python"), "-m", "pip", "install", "--quiet"]
    subprocess.run([*pip, "-r", str(context / "requirements.txt")], check=True, env=env)
    (wheel,) = (context / "wheels").glob("kiln_ml-*.whl")
    subprocess.run([*pip, "--no-deps", str(wheel)], check=True, env=env)


def clean_env(venv: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "PYTHONHOME", "VIRTUAL_ENV")}
    return {**env, "PATH": f"{venv / 'bin'}{os.pathsep}{env.get('PATH', '')}", "OMP_NUM_THREADS": "1"}


def site_packages_mib(python: Path) -> tuple[Path, float]:
    path = Path(subprocess.run([str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
                               capture_output=True, text=True, check=True).stdout.strip())
    kib = int(subprocess.run(["du", "-sk", str(path)], capture_output=True, text=True, check=True).stdout.split()[0])
    return path, kib / 1024


def cold_start(kiln: Path, context: Path, env: dict[str, str]) -> float:
    """Seconds from starting ``kiln serve`` to the first 200 from /ready."""
    started = time.perf_counter()
    with subprocess.Popen([str(kiln), "serve", "model", "--port", "0", "--backend", "onnx"],
                          cwd=context, env=env, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL,
                          text=True) as server:
        assert server.stdout is not None
        base = next(line for line in server.stdout if line.startswith("serving ")).split(" on ")[1].split()[0]
        while True:
            try:
                with urllib.request.urlopen(f"{base}/ready", timeout=5) as answer:
                    if answer.status == 200:
                        break
            except (urllib.error.URLError, ConnectionError):
                time.sleep(0.005)
        elapsed = time.perf_counter() - started
        server.send_signal(signal.SIGTERM)
        server.wait(60)
    return elapsed


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--starts", type=int, default=5)
    parser.add_argument("--work", type=Path, default=ROOT / "bench" / "results" / "serve_cold_start")
    args = parser.parse_args()
    args.work.mkdir(parents=True, exist_ok=True)
    note("training and packaging the enhanced CNN (1 epoch, synthetic 28x28)...")
    run, context = build(args.work)
    venv = args.work / "venv"
    note(f"installing {context} into {venv}...")
    t0 = time.perf_counter()
    install(context, venv)
    note(f"installed in {time.perf_counter() - t0:.1f} s")
    serving_path, serving = site_packages_mib(venv / "bin" / "python")
    dev_path, dev = site_packages_mib(Path(sys.executable))
    torch_free = subprocess.run([str(venv / "bin" / "python"), "-c", "import torch"],
                                capture_output=True, env=clean_env(venv)).returncode != 0
    rows = []
    for label, kiln, env in (
            ("serving venv (no torch)", venv / "bin" / "kiln", clean_env(venv)),
            ("kiln dev venv (torch installed)", Path(sys.executable).parent / "kiln",
             {**os.environ, "OMP_NUM_THREADS": "1"})):
        cold_start(kiln, context, env)  # one unmeasured start: the files into the page cache
        times = [cold_start(kiln, context, env) for _ in range(args.starts)]
        note(f"{label}: " + ", ".join(f"{t:.3f}" for t in times))
        rows.append((label, times))
    meta = json.loads((run / "models" / "model.json").read_text())
    print(f"Model: {meta.get('parameters')} parameters, ONNX "
          f"{(run / 'models' / 'model.onnx').stat().st_size / 2**20:.2f} MiB; `import torch` in the "
          f"serving venv {'fails' if torch_free else 'SUCCEEDS'}.\n")
    print("| environment | site-packages | size |\n|---|---|---|")
    print(f"| serving venv | `{serving_path}` | {serving:.0f} MiB |")
    print(f"| kiln dev venv | `{dev_path}` | {dev:.0f} MiB |")
    print(f"\nRatio: {serving / dev:.3f} (target under 1/3).\n")
    print("| kiln serve from | starts | median to /ready | min | max |\n|---|---|---|---|---|")
    for label, times in rows:
        print(f"| {label} | {len(times)} | {statistics.median(times):.3f} s | {min(times):.3f} s | {max(times):.3f} s |")


if __name__ == "__main__":
    main()
