"""What a run ran on: git commit, versions of every package, platform, hardware, command line."""

from __future__ import annotations

import getpass
import importlib.metadata
import os
import platform
import socket
import subprocess
import sys
from pathlib import Path
from typing import Any

from kiln.runs.layout import RunPaths


def git_info(cwd: Path | None = None) -> dict[str, Any]:
    """Commit and dirty flag of the repository holding ``cwd``, or ``{}`` outside a repository."""
    try:
        commit = subprocess.run(
            ["git", "rev-parse", "HEAD"], cwd=cwd, capture_output=True, text=True, timeout=10
        )
        if commit.returncode != 0:
            return {}
        status = subprocess.run(
            ["git", "status", "--porcelain", "--untracked-files=no"],
            cwd=cwd, capture_output=True, text=True, timeout=10,
        )
    except (OSError, subprocess.TimeoutExpired):
        return {}
    return {"commit": commit.stdout.strip(), "dirty": bool(status.stdout.strip())}


def packages() -> dict[str, str]:
    """Every installed distribution and its version."""
    found: dict[str, str] = {}
    for dist in importlib.metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            found[name] = dist.version
    return dict(sorted(found.items(), key=lambda kv: kv[0].lower()))


# Instruction sets that decide which kernels torch and ONNX Runtime run on a CPU, and so their
# numerics: int8 without VNNI (avx512_vnni, avx_vnni) saturates and can flip a thin class margin.
KERNEL_ISA = (
    "fma", "avx2", "avx512f", "avx512_vnni", "avx_vnni", "avx512_bf16", "amx_bf16", "amx_int8",  # x86
    "asimd", "asimddp", "i8mm", "bf16", "sve",  # arm64
)


def parse_cpuinfo(text: str) -> tuple[str | None, set[str]]:
    """The first model name and flag set in a /proc/cpuinfo text (``flags`` on x86, ``Features`` on arm)."""
    model: str | None = None
    flags: set[str] = set()
    for line in text.splitlines():
        key, _, value = line.partition(":")
        key = key.strip()
        if key == "model name" and model is None:
            model = value.strip()
        elif key in ("flags", "Features") and not flags:
            flags = set(value.split())
    return model, flags


def cpu() -> dict[str, Any]:
    """The CPU's model, torch's kernel level on it and its instruction sets that change numerics,
    so that an export or a run measured on one machine says what it was measured on."""
    import torch

    try:
        model, flags = parse_cpuinfo(Path("/proc/cpuinfo").read_text())
    except OSError:  # not Linux
        model, flags = None, set()
    return {
        "model": model or platform.processor() or platform.machine(),
        "torch_capability": torch.backends.cpu.get_cpu_capability(),
        "isa": [name for name in KERNEL_ISA if name in flags],
    }


def hardware() -> dict[str, Any]:
    import psutil
    import torch

    processor = cpu()
    info: dict[str, Any] = {
        "cpu": processor["model"],
        "cpu_isa": processor["isa"],
        "torch_cpu_capability": processor["torch_capability"],
        "cpu_count": os.cpu_count(),
        "memory_gb": round(psutil.virtual_memory().total / 2**30, 1),
        "torch_threads": torch.get_num_threads(),
        "cuda_available": torch.cuda.is_available(),
        "gpus": [],
    }
    if torch.cuda.is_available():
        info["gpus"] = [torch.cuda.get_device_name(i) for i in range(torch.cuda.device_count())]
        info["cuda_version"] = torch.version.cuda
    return info


def capture_environment(seed: int, device: str) -> dict[str, Any]:
    import torch

    from kiln._version import __version__

    return {
        "kiln_version": __version__,
        "git": git_info(),
        "python": sys.version.split()[0],
        "torch": torch.__version__,
        "platform": platform.platform(),
        "hostname": socket.gethostname(),
        "user": _user(),
        "cwd": os.getcwd(),
        "command": sys.argv,
        "seed": seed,
        "device": device,
        "hardware": hardware(),
        "packages": packages(),
    }


def _user() -> str:
    try:
        return getpass.getuser()
    except (KeyError, OSError):
        return ""


def run_tags(environment: dict[str, Any], paths: RunPaths) -> dict[str, str]:
    """Tags that tie a tracked run to its code, config, data and machine."""
    git = environment.get("git", {})
    tags = {
        "kiln.version": str(environment["kiln_version"]),
        "kiln.config_hash": str(environment["config_hash"]),
        "kiln.data_fingerprint": str(environment["data_fingerprint"]),
        "kiln.host": str(environment["hostname"]),
        "kiln.run_dir": str(paths.root.resolve()),
    }
    if git:
        tags.update({"kiln.git_commit": str(git["commit"]), "kiln.git_dirty": str(git["dirty"]).lower(),
                     "mlflow.source.git.commit": str(git["commit"])})
    return tags
