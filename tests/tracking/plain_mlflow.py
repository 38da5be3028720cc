"""Load a kiln model the way a plain MLflow user does, in a process without kiln, and check its
predictions on batches of 1 and 7, shaped and flat, against kiln's own model."""

from __future__ import annotations

import json
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import numpy as np
import torch

import kiln


def _predict_with_plain_mlflow(uri: str, models: dict[str, str], tmp_path: Path) -> dict[str, Any]:
    """In a process without kiln: load each model with mlflow.pyfunc and predict batches of 1 and 7,
    as a shaped array (n, 1, 8, 8) and in the flat form a tensor signature allows (a one-column
    DataFrame of flattened rows). Returns {name: {form: predictions}} or {name: error}."""
    inputs = np.random.default_rng(0).normal(size=(7, 1, 8, 8)).astype(np.float32)
    np.save(tmp_path / "inputs.npy", inputs)
    script = textwrap.dedent(f"""
        import json, sys
        import numpy as np, pandas as pd
        import mlflow
        mlflow.set_tracking_uri({uri!r})
        x = np.load({str(tmp_path / 'inputs.npy')!r})
        out = {{}}
        for name, model_uri in {models!r}.items():
            try:
                model = mlflow.pyfunc.load_model(model_uri)
                got = {{}}
                for n in (1, 7):
                    got[f"shaped{{n}}"] = np.asarray(model.predict(x[:n])).tolist()
                    flat = pd.DataFrame({{"x": [row.ravel().tolist() for row in x[:n]]}})
                    got[f"flat{{n}}"] = np.asarray(model.predict(flat)).tolist()
                out[name] = got
            except Exception as exc:
                out[name] = f"{{type(exc).__name__}}: {{exc}}"[:500]
        assert not any(m == "kiln" or m.startswith("kiln.") for m in sys.modules)
        print(json.dumps(out))
    """)
    result = subprocess.run([sys.executable, "-c", script], capture_output=True, text=True, timeout=600,
                            env={"MLFLOW_DISABLE_TELEMETRY": "true", "PATH": "/usr/bin:/bin"})
    assert result.returncode == 0, result.stderr[-3000:]
    answer: dict[str, Any] = json.loads(result.stdout.strip().splitlines()[-1])
    return answer


def _expected(run_dir: Path, n: int) -> np.ndarray:
    inputs = np.random.default_rng(0).normal(size=(7, 1, 8, 8)).astype(np.float32)
    with torch.no_grad():
        out: np.ndarray = kiln.load_model(run_dir)(torch.from_numpy(inputs[:n])).numpy()
    return out


def assert_plain_mlflow_predicts_any_batch(uri: str, models: dict[str, str], runs: dict[str, Path],
                                           tmp_path: Path) -> None:
    """Each of ``models`` (name -> MLflow model URI) predicts what ``runs[name]``'s model does."""
    predicted = _predict_with_plain_mlflow(uri, models, tmp_path)
    for name, run_dir in runs.items():
        assert isinstance(predicted[name], dict), f"{name}: {predicted[name]}"
        for n in (1, 7):
            for form in ("shaped", "flat"):
                np.testing.assert_allclose(np.array(predicted[name][f"{form}{n}"], dtype=np.float32),
                                           _expected(run_dir, n), rtol=1e-5, atol=1e-6,
                                           err_msg=f"{name} {form}{n}")
