"""Classic control tasks on MJX: pendulum swing-up, cart-pole balance and swing-up, reacher.

Rewards are in [0, 1] per step, shaped as in the DeepMind Control Suite, and dense.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from envs._assets import asset_path
from robojax.envs.core import ArraySpec
from robojax.envs.mjx_env import MjxEnv, load_model
from robojax.envs.rewards import tolerance

_COS_30 = float(np.cos(np.deg2rad(30.0)))


class PendulumSwingup(MjxEnv):
    """Swing a torque-limited pendulum up and hold it within 30 degrees of upright.

    obs: [cos(angle), sin(angle), angular velocity]; angle 0 = upright.
    reward: 1 within 30 degrees of upright, falling linearly to 0 hanging straight down.
    """

    episode_length = 1000

    def __init__(self, control_dt: float = 0.02, **opt_overrides):
        super().__init__(load_model(asset_path("classic", "pendulum.xml"), opt_overrides), control_dt)

    @property
    def observation_spec(self):
        return ArraySpec((3,), np.float32, name="observation")

    def _reset_physics(self, key):
        angle = jax.random.uniform(key, (1,), minval=-jnp.pi, maxval=jnp.pi)
        return self.make_data(angle, jnp.zeros(1)), {}

    def _observe(self, data, episode):
        q = data.qpos[0]
        return jnp.stack([jnp.cos(q), jnp.sin(q), data.qvel[0]]).astype(jnp.float32)

    def _reward(self, data, episode, action):
        upright = jnp.cos(data.qpos[0])
        reward = jnp.clip((upright + 1.0) / (1.0 + _COS_30), 0.0, 1.0)
        return reward, {"upright": upright}

    def _success(self, data, episode):
        return jnp.cos(data.qpos[0]) >= _COS_30


class _Cartpole(MjxEnv):
    """Cart-pole; obs: [cart position, cos, sin of pole angle, cart velocity, pole angular velocity]."""

    episode_length = 1000
    swing_up = False

    def __init__(self, control_dt: float = 0.01, **opt_overrides):
        super().__init__(load_model(asset_path("classic", "cartpole.xml"), opt_overrides), control_dt)

    @property
    def observation_spec(self):
        return ArraySpec((5,), np.float32, name="observation")

    def _reset_physics(self, key):
        k1, k2, k3 = jax.random.split(key, 3)
        if self.swing_up:
            cart = 0.01 * jax.random.normal(k1)
            pole = jnp.pi + 0.01 * jax.random.normal(k2)
        else:
            cart = jax.random.uniform(k1, minval=-0.1, maxval=0.1)
            pole = jax.random.uniform(k2, minval=-0.034, maxval=0.034)
        qvel = 0.01 * jax.random.normal(k3, (2,))
        return self.make_data(jnp.stack([cart, pole]), qvel), {}

    def _observe(self, data, episode):
        x, th = data.qpos[0], data.qpos[1]
        return jnp.stack([x, jnp.cos(th), jnp.sin(th), data.qvel[0], data.qvel[1]]).astype(jnp.float32)

    def _reward(self, data, episode, action):
        # Product of four soft terms, each in [0, 1]: upright pole, centred cart, small control,
        # small pole velocity (DeepMind Control Suite's smooth cart-pole reward).
        upright = (jnp.cos(data.qpos[1]) + 1.0) / 2.0
        centered = (1.0 + tolerance(data.qpos[0], margin=2.0)) / 2.0
        small_control = (4.0 + tolerance(action[0], margin=1.0, value_at_margin=1e-6, sigmoid="quadratic")) / 5.0
        small_velocity = (1.0 + tolerance(data.qvel[1], margin=5.0)) / 2.0
        reward = upright * centered * small_control * small_velocity
        return reward, {"upright": upright, "centered": centered}

    def _success(self, data, episode):
        return (jnp.cos(data.qpos[1]) > 0.95) & (jnp.abs(data.qpos[0]) < 0.25)


class CartpoleBalance(_Cartpole):
    """Keep a nearly upright pole balanced for 1000 steps (10 s)."""

    swing_up = False


class CartpoleSwingup(_Cartpole):
    """Swing the pole up from hanging down and balance it."""

    swing_up = True


class Reacher(MjxEnv):
    """Two-link planar arm moving its fingertip onto a random target.

    obs: [cos q1, sin q1, cos q2, sin q2, q1 dot, q2 dot, target xy, fingertip-to-target xy].
    reward: 1 within the target radius, decaying smoothly (gaussian) over 0.2 m.
    """

    episode_length = 200
    target_radius = 0.02

    def __init__(self, control_dt: float = 0.02, **opt_overrides):
        super().__init__(load_model(asset_path("classic", "reacher.xml"), opt_overrides), control_dt)
        self._finger = self.mj_model.site("finger").id

    @property
    def observation_spec(self):
        return ArraySpec((10,), np.float32, name="observation")

    def _reset_physics(self, key):
        k1, k2, k3 = jax.random.split(key, 3)
        qpos = jnp.stack(
            [
                jax.random.uniform(k1, minval=-jnp.pi, maxval=jnp.pi),
                jax.random.uniform(k2, minval=-2.5, maxval=2.5),
            ]
        )
        # Targets anywhere in the reachable annulus, uniform in area.
        ka, kr = jax.random.split(k3)
        angle = jax.random.uniform(ka, minval=-jnp.pi, maxval=jnp.pi)
        radius = jnp.sqrt(jax.random.uniform(kr, minval=0.05**2, maxval=0.2**2))
        target = jnp.stack([radius * jnp.cos(angle), radius * jnp.sin(angle)])
        mocap = jnp.concatenate([target, jnp.zeros(1)])[None]
        data = self.make_data(qpos, jnp.zeros(2), mocap_pos=mocap)
        return data, {"target": target}

    def _to_target(self, data, episode):
        return episode["target"] - data.site_xpos[self._finger, :2]

    def _observe(self, data, episode):
        q = data.qpos
        return jnp.concatenate([jnp.cos(q), jnp.sin(q), data.qvel, episode["target"], self._to_target(data, episode)])[
            jnp.array([0, 2, 1, 3, 4, 5, 6, 7, 8, 9])
        ].astype(jnp.float32)

    def _reward(self, data, episode, action):
        dist = jnp.linalg.norm(self._to_target(data, episode))
        return tolerance(dist, (0.0, self.target_radius), margin=0.2), {"distance": dist}

    def _success(self, data, episode):
        return jnp.linalg.norm(self._to_target(data, episode)) < self.target_radius
