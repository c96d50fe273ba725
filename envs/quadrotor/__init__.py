"""Quadrotor simulator and RAPTOR tasks (`quadrotor_hover`, `quadrotor_track`) in pure JAX.

    import envs
    from envs import quadrotor

    env = envs.make("quadrotor_hover", num_envs=1024)        # a fresh random quadrotor per episode
    env = envs.make("quadrotor_track", randomize=False)      # the nominal Crazyflie-like one
    params = jax.vmap(quadrotor.sample_parameters)(keys)     # dict of arrays, leading axis 1024
    state = env.reset_with_parameters(key, params)           # any stack: every wrapper passes it on

`state.obs` (22) is the student's observation, `state.info["teacher_obs"]` (29) adds the motor
speeds and the episode's standardised disturbance draw; `state.dynamics` holds the quadrotor; `state.info["position_error"]` is the distance to
the reference (m); `state.info["success"]` is False on a crash. Layout constants: `OBS_SIZE`,
`TEACHER_OBS_SIZE`, `envs.quadrotor.env.OBS_POSITION` etc.
"""

from envs.quadrotor.dynamics import (
    GRAVITY,
    PARAMETER_NAMES,
    RANGES,
    hover_motor_speed,
    make_parameters,
    nominal_parameters,
    quat_to_rotation,
    rk4_step,
    sample_parameters,
    thrust,
)
from envs.quadrotor.env import (
    ACTION_SIZE,
    OBS_SIZE,
    TEACHER_OBS_SIZE,
    QuadrotorEnv,
    QuadrotorHover,
    QuadrotorTrack,
    reset_with_parameters,
)
