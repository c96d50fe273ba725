"""The quadrotor tasks' interface shared by `envs/quadrotor` (which fills it) and RAPTOR (which reads it)."""

from __future__ import annotations

# `state.info[TEACHER_OBS_KEY]`: the privileged observation (the student's 22 values, the true motor
# speeds, the episode's disturbance draw) that RAPTOR's teachers observe and label from.
TEACHER_OBS_KEY = "teacher_obs"
