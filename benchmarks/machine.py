"""Facts about the machine a benchmark ran on (no absl flags here, so any benchmark can import it)."""

from __future__ import annotations

import os
import platform
import sys


def machine_info() -> dict:
    import jax
    import mujoco

    cpu = platform.processor()
    try:
        with open("/proc/cpuinfo") as f:
            cpu = next(l.split(":", 1)[1].strip() for l in f if l.startswith("model name"))
    except (OSError, StopIteration):
        pass
    return {
        "cpu": cpu,
        "cores": os.cpu_count(),
        "jax": jax.__version__,
        "backend": jax.default_backend(),
        "mujoco": mujoco.__version__,
        "python": sys.version.split()[0],
        "xla_flags": os.environ.get("XLA_FLAGS", ""),
    }
