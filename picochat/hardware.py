"""What the machine can do: device choice, bf16 support, measured matmul peak (for MFU)."""

from __future__ import annotations

import json
import os
import time
from functools import lru_cache
from pathlib import Path

import torch


def pick_device(requested: str = "auto") -> torch.device:
    if requested != "auto":
        return torch.device(requested)
    if torch.cuda.is_available():
        return torch.device("cuda")
    if getattr(torch.backends, "mps", None) and torch.backends.mps.is_available():
        return torch.device("mps")
    return torch.device("cpu")


@lru_cache(maxsize=1)
def cpu_flags() -> set[str]:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("flags"):
                return set(line.split(":", 1)[1].split())
    except OSError:
        pass
    return set()


def cpu_has_fast_bf16() -> bool:
    """AMX or AVX-512 BF16: bf16 matrix products run 2-4x faster than fp32 on such CPUs."""
    return bool({"amx_bf16", "avx512_bf16"} & cpu_flags())


def pick_dtype(requested: str, device: torch.device) -> torch.dtype:
    """The autocast dtype: bf16 where the hardware has it (requested 'auto'), else fp32."""
    if requested == "fp32":
        return torch.float32
    if requested == "bf16":
        return torch.bfloat16
    if requested != "auto":
        raise ValueError(f"dtype must be auto, bf16 or fp32, not {requested!r}")
    if device.type == "cuda" and torch.cuda.is_bf16_supported():
        return torch.bfloat16
    if device.type == "cpu" and cpu_has_fast_bf16():
        return torch.bfloat16
    return torch.float32


def machine_key(device: torch.device) -> str:
    if device.type == "cuda":
        return torch.cuda.get_device_name(device)
    model = "cpu"
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                model = line.split(":", 1)[1].strip()
                break
    except OSError:
        pass
    return f"{model} x{torch.get_num_threads()} threads"


def measure_matmul_flops(device: torch.device, dtype: torch.dtype, n: int = 0, seconds: float = 1.0) -> float:
    """Sustained FLOP/s of square matrix products of size n in `dtype` on `device`."""
    n = n or (8192 if device.type == "cuda" else 1024)
    a = torch.randn(n, n, device=device, dtype=dtype)
    b = torch.randn(n, n, device=device, dtype=dtype)
    sync = torch.cuda.synchronize if device.type == "cuda" else (lambda: None)
    for _ in range(3):
        a @ b
    sync()
    iters, start = 0, time.perf_counter()
    while time.perf_counter() - start < seconds:
        a @ b
        iters += 1
    sync()
    return 2 * n**3 * iters / (time.perf_counter() - start)


def peak_cache() -> Path:
    return Path(os.environ.get("PICOCHAT_CACHE", Path.home() / ".cache" / "picochat")) / "peak_flops.json"


def measured_peaks() -> dict[str, float]:
    """The matmul peaks measured so far on this machine: "<machine> <dtype>" -> FLOP/s."""
    try:
        known = json.loads(peak_cache().read_text())
    except (OSError, json.JSONDecodeError):
        return {}
    return known if isinstance(known, dict) else {}


def peak_flops(device: torch.device, dtype: torch.dtype) -> float:
    """Measured matmul peak, cached per machine, thread count and dtype (for MFU)."""
    cache = peak_cache()
    key = f"{machine_key(device)} {dtype}"
    known = measured_peaks()
    if key not in known:
        known[key] = measure_matmul_flops(device, dtype)
        try:
            cache.parent.mkdir(parents=True, exist_ok=True)
            cache.write_text(json.dumps(known, indent=1))
        except OSError:
            pass  # a read-only home only costs a re-measurement next time
    return known[key]
