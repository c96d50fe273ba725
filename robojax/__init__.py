"""robojax: a JAX toolkit for robot learning on vectorised MuJoCo-MJX environments."""

import os as _os


def _tune_xla_cpu() -> None:
    """Turn off XLA:CPU's fusion emitters unless the user chose otherwise.

    On jax 0.10 they make MJX's many small fused ops 10-1000x slower on CPU (a Panda arm step at
    batch 16: 1 s with them, 1 ms without) and double compile times. The flag only concerns the
    CPU backend. It must be set before JAX initialises its backends, so import robojax (or envs)
    before running any JAX computation. Set ROBOJAX_XLA_CPU_DEFAULTS=0 to leave XLA_FLAGS alone.
    """
    if _os.environ.get("ROBOJAX_XLA_CPU_DEFAULTS", "1") == "0":
        return
    flags = _os.environ.get("XLA_FLAGS", "")
    if "xla_cpu_use_fusion_emitters" not in flags:
        _os.environ["XLA_FLAGS"] = (flags + " --xla_cpu_use_fusion_emitters=false").strip()


_tune_xla_cpu()

__version__ = "0.1.0"
