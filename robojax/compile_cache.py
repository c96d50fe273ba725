"""JAX's persistent compilation cache, shared by every experiment entry point."""

from __future__ import annotations

import os


def enable_compilation_cache(directory: str) -> None:
    """Persist compiled XLA programs in `directory` so reruns skip most compile time ('' is a no-op)."""
    import jax

    if not directory:
        return
    os.makedirs(directory, exist_ok=True)
    jax.config.update("jax_compilation_cache_dir", directory)
    jax.config.update("jax_persistent_cache_min_compile_time_secs", 0.5)
    jax.config.update("jax_persistent_cache_min_entry_size_bytes", 0)
