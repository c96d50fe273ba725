"""Record scripted-expert demonstrations into an episode dataset (robojax.data.episodes, C1).

    python -m experiments.collect_demos --env=arm_push_cube --num_episodes=200 --out=demos/push
    python -m experiments.collect_demos --env=arm_pick_place --num_episodes=200 --out=demos/pick_place \\
        --noise=0.05 --num_envs=50 --seed=0

The expert (`envs.experts.expert_action`) runs in a vectorised MJX env: one jitted `lax.scan`
over a whole episode, vmapped over `--num_envs` copies. Each episode is cut at its first
terminated step (otherwise it runs the task's full length) and written with per-episode
metadata: seed, key_index (the episode's keys are `fold_in(PRNGKey(seed), key_index)`),
success, mode (arm_pick_place: "left"/"right" of the pillar), noise, return. With
`--only_successful` (default) failed episodes are dropped and collection continues until
`--num_episodes` successful ones are written. An existing dataset is never overwritten
unless `--overwrite`.
"""

from __future__ import annotations

import os
import shutil
import time

from absl import app, flags

import robojax  # noqa: F401  (sets XLA CPU flags before JAX initialises)

_ENV = flags.DEFINE_string("env", "arm_push_cube", "Task with a scripted expert: arm_push_cube or arm_pick_place.")
_NUM_EPISODES = flags.DEFINE_integer("num_episodes", 200, "Episodes to write.")
_OUT = flags.DEFINE_string("out", None, "Dataset directory to create.")
_ONLY_SUCCESSFUL = flags.DEFINE_boolean("only_successful", True, "Write only episodes the expert solved.")
_SEED = flags.DEFINE_integer("seed", 0, "Base seed of the episodes' reset and expert keys.")
_NUM_ENVS = flags.DEFINE_integer("num_envs", 50, "Episodes simulated in parallel per batch.")
_NOISE = flags.DEFINE_float("noise", 0.0, "Std of Gaussian noise on the expert's Cartesian actions (action units).")
_EPISODE_LENGTH = flags.DEFINE_integer("episode_length", None, "Steps per episode (default: the task's).")
_MAX_ATTEMPTS = flags.DEFINE_integer(
    "max_attempts", None, "Give up after this many simulated episodes (default: 3 x num_episodes + num_envs)."
)
_OVERWRITE = flags.DEFINE_boolean("overwrite", False, "Delete an existing dataset at --out first.")


def collect(
    env_name: str,
    out: str,
    num_episodes: int,
    *,
    seed: int = 0,
    num_envs: int = 50,
    noise: float = 0.0,
    only_successful: bool = True,
    episode_length: int | None = None,
    max_attempts: int | None = None,
    overwrite: bool = False,
    progress: bool = True,
) -> dict:
    """Run the expert and write a dataset at `out`; returns a summary dict (see `main`)."""
    import jax
    import numpy as np

    import envs
    from envs.experts import MODES, make_rollout
    from robojax.data.episodes import EpisodeWriter
    from robojax.logging import ProgressBar

    if num_episodes < 1 or num_envs < 1:
        raise ValueError("num_episodes and num_envs must be >= 1")
    if os.path.exists(out):
        if not overwrite:
            raise FileExistsError(f"{out} already exists; pass --overwrite to replace it, or choose another --out")
        shutil.rmtree(out)
    env = envs.make(env_name, num_envs=num_envs, episode_length=episode_length, autoreset=False)
    length = int(episode_length or env.episode_length)
    rollout = make_rollout(env, length, noise)
    multimodal = env_name == "arm_pick_place"
    discrete = [3] if env.action_spec.shape == (4,) else []
    max_attempts = max_attempts or 3 * num_episodes + num_envs
    base = jax.random.key(seed)
    written = attempts = successes = 0
    t0 = time.perf_counter()
    compile_s = None
    bar = ProgressBar(num_episodes, enabled=progress)
    with EpisodeWriter(
        out,
        env.observation_spec,
        env.action_spec,
        env=env_name,
        control_dt=float(env.dt),
        discrete_action_dims=discrete,
        metadata={
            "source": "scripted expert (envs.experts)",
            "noise": noise,
            "seed": seed,
            "episode_length": length,
            "only_successful": only_successful,
        },
    ) as writer:
        while written < num_episodes and attempts < max_attempts:
            indices = np.arange(attempts, attempts + num_envs)
            keys = jax.vmap(lambda i: jax.random.fold_in(base, i))(indices)
            tb = time.perf_counter()
            batch = jax.device_get(rollout(keys))
            if compile_s is None:
                compile_s = time.perf_counter() - tb
            attempts += num_envs
            for b in range(num_envs):
                done = batch["done"][:, b]
                n = int(np.argmax(done)) + 1 if done.any() else length
                success = bool(batch["success"][n - 1, b] and not batch["terminated"][:n, b].any())
                successes += success
                if (only_successful and not success) or written >= num_episodes:
                    continue
                meta = {
                    "seed": seed,
                    "key_index": int(indices[b]),
                    "noise": noise,
                    "return": float(batch["reward"][:n, b].sum()),
                }
                meta["mode"] = MODES[int(batch["mode"][b])] if multimodal else None
                writer.add_episode(
                    batch["obs"][:n, b],
                    batch["action"][:n, b],
                    rewards=batch["reward"][:n, b],
                    success=success,
                    metadata=meta,
                )
                written += 1
            bar.update(written)
    elapsed = time.perf_counter() - t0
    summary = {
        "env": env_name,
        "out": out,
        "written": written,
        "attempts": attempts,
        "success_rate": successes / max(attempts, 1),
        "seconds": elapsed,
        "first_batch_seconds": compile_s,
    }
    if written < num_episodes:
        raise RuntimeError(
            f"only {written}/{num_episodes} successful episodes after {attempts} attempts (expert success"
            f" {summary['success_rate']:.0%}); raise --max_attempts or lower --noise. Partial dataset at {out}"
        )
    return summary


def main(argv):
    del argv
    if not _OUT.value:
        raise app.UsageError("--out=DIR is required")
    s = collect(
        _ENV.value,
        _OUT.value,
        _NUM_EPISODES.value,
        seed=_SEED.value,
        num_envs=_NUM_ENVS.value,
        noise=_NOISE.value,
        only_successful=_ONLY_SUCCESSFUL.value,
        episode_length=_EPISODE_LENGTH.value,
        max_attempts=_MAX_ATTEMPTS.value,
        overwrite=_OVERWRITE.value,
    )
    print(
        f"{s['env']}: wrote {s['written']} episodes to {s['out']}; expert success rate"
        f" {s['success_rate']:.1%} over {s['attempts']} episodes; {s['seconds']:.1f} s"
        f" (first batch incl. compile {s['first_batch_seconds']:.1f} s)"
    )


if __name__ == "__main__":
    app.run(main)
