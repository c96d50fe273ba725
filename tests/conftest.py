"""Test-wide JAX set-up: persistent compilation cache, so reruns skip most compile time, and XLA's
backend optimisation level 0 (the suite is compile-bound: a cold run is about a quarter faster,
and the tests' tiny models run about as fast either way). Set XLA_FLAGS with your own
--xla_backend_optimization_level to override it; subprocesses inherit the setting."""

import os

if "--xla_backend_optimization_level" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (os.environ.get("XLA_FLAGS", "") + " --xla_backend_optimization_level=0").strip()

import jax  # noqa: E402 - after XLA_FLAGS, which the backend reads when it starts

_CACHE = os.environ.get("ROBOJAX_JAX_CACHE", os.path.expanduser("~/.cache/robojax/jax_cache"))
os.makedirs(_CACHE, exist_ok=True)
jax.config.update("jax_compilation_cache_dir", _CACHE)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
