"""Test-wide JAX set-up: persistent compilation cache, so reruns skip most compile time."""

import os

import jax

_CACHE = os.environ.get("ROBOJAX_JAX_CACHE", os.path.expanduser("~/.cache/robojax/jax_cache"))
os.makedirs(_CACHE, exist_ok=True)
jax.config.update("jax_compilation_cache_dir", _CACHE)
jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
