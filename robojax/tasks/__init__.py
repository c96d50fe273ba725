"""Task definitions shared by the MJX envs (`envs/`) and host-side simulators (`robojax.drivers`).

Constants and the pure reward / success / termination / controller maths, written against an
array module `xp` (numpy or jax.numpy) so that one definition serves the jitted env and the
C-MuJoCo simulator. Nothing here imports JAX: the simulator stands in for a robot and starts in
well under a second.
"""
