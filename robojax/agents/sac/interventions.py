"""Human (or scripted) interventions for the host actor loop (SERL / HIL-SERL / RaC).

An `InterventionSource` is polled once per env step with the current observation. It returns
None (the policy acts) or an action in the policy's normalised units, [-1, 1] per dimension; that
action replaces the policy's, the transition is stored with `intervention=True`, and it also goes
to the demo buffer.

  `ScriptedIntervention`   for tests and scripted correction: acts on given step ranges.
  `KeyboardIntervention`   keys of a terminal (stdin must be a TTY), read without blocking.
  `SpaceMouseIntervention` a 3Dconnexion SpaceMouse through the optional `pyspacemouse` package.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol, runtime_checkable

import numpy as np


@runtime_checkable
class InterventionSource(Protocol):
    """Polled once per env step by the actor thread; returns an action in [-1, 1]^A, or None."""

    def poll(self, obs: np.ndarray) -> np.ndarray | None: ...

    def close(self) -> None: ...


class ScriptedIntervention:
    """Acts on the given ranges of actor steps (counted from its first poll) with `policy(obs)`.

    steps: (start, stop) pairs, stop exclusive, e.g. [(0, 10), (50, 60)].
    policy: obs -> action in [-1, 1]^A (default: zeros of `action_dim`).
    """

    def __init__(
        self,
        steps: Sequence[tuple[int, int]],
        policy: Callable[[np.ndarray], np.ndarray] | None = None,
        action_dim: int | None = None,
    ):
        if policy is None and action_dim is None:
            raise ValueError("ScriptedIntervention needs a policy or an action_dim (for zero actions)")
        self.ranges = [(int(a), int(b)) for a, b in steps]
        self.policy = policy or (lambda obs: np.zeros(action_dim, np.float32))
        self.polls = 0

    def poll(self, obs: np.ndarray) -> np.ndarray | None:
        step, self.polls = self.polls, self.polls + 1
        if any(a <= step < b for a, b in self.ranges):
            return np.asarray(self.policy(obs), np.float32)
        return None

    def close(self) -> None:
        pass


# Default keyboard layout: dimension -> (key for -1, key for +1).
DEFAULT_KEYS = ("ad", "sw", "jl", "ki", "uo", "nm")


class KeyboardIntervention:
    """Keys of the controlling terminal mapped to action dimensions, read without blocking.

    `keys[i]` is a two-character string: the first key drives dimension i to -`magnitude`, the
    second to +`magnitude`. A key press holds its action for `hold_s` seconds (terminals repeat held
    keys every ~30 ms after a ~0.5 s delay), then the policy acts again. The terminal is put in
    cbreak mode (no echo, no line buffering) until `close`. Needs stdin to be a TTY.
    """

    def __init__(
        self,
        action_dim: int,
        keys: Sequence[str] | None = None,
        magnitude: float = 1.0,
        hold_s: float = 0.6,
        stream=None,
    ):
        self.stream = stream or sys.stdin
        if not (hasattr(self.stream, "isatty") and self.stream.isatty()):
            raise RuntimeError(
                "KeyboardIntervention reads keys from a terminal, but stdin is not a TTY; run the"
                " command in an interactive terminal (not under nohup, a pipe or a notebook), or use"
                " --intervention=none"
            )
        import termios
        import tty

        keys = tuple(keys or DEFAULT_KEYS[:action_dim])
        if len(keys) != action_dim or any(len(k) != 2 for k in keys):
            raise ValueError(f"KeyboardIntervention needs one 2-key string per action dim ({action_dim}), got {keys}")
        self.action_dim = action_dim
        self.magnitude = float(magnitude)
        self.hold_s = float(hold_s)
        self.bindings: dict[str, tuple[int, float]] = {}
        for dim, (minus, plus) in enumerate(keys):
            self.bindings[minus] = (dim, -self.magnitude)
            self.bindings[plus] = (dim, self.magnitude)
        self._action = np.zeros(action_dim, np.float32)
        self._until = 0.0
        self._fd = self.stream.fileno()
        self._saved = termios.tcgetattr(self._fd)
        tty.setcbreak(self._fd)
        self._termios = termios

    def describe(self) -> str:
        return ", ".join(f"{k}: dim {d} {'+' if v > 0 else '-'}" for k, (d, v) in self.bindings.items())

    def poll(self, obs: np.ndarray | None = None) -> np.ndarray | None:
        import os
        import select

        now = time.monotonic()
        pressed = False
        while select.select([self._fd], [], [], 0.0)[0]:
            char = os.read(self._fd, 1).decode(errors="ignore")
            if char in self.bindings:
                if not pressed:  # a new batch of keys replaces the held action
                    self._action = np.zeros(self.action_dim, np.float32)
                    pressed = True
                dim, value = self.bindings[char]
                self._action[dim] = value
                self._until = now + self.hold_s
        return self._action.copy() if now < self._until else None

    def close(self) -> None:
        if self._saved is not None:
            self._termios.tcsetattr(self._fd, self._termios.TCSADRAIN, self._saved)
            self._saved = None


class SpaceMouseIntervention:
    """A 3Dconnexion SpaceMouse through `pyspacemouse` (optional: install it yourself).

    The six axes (x, y, z, roll, pitch, yaw) map onto the first action dims (or the given
    `axes` order), scaled by `scale` and clipped to [-1, 1]; the expert acts whenever any mapped
    axis exceeds `deadzone` (SERL's `SpacemouseIntervention` uses 0.001).
    """

    AXES = ("x", "y", "z", "roll", "pitch", "yaw")

    def __init__(
        self,
        action_dim: int,
        axes: Sequence[str] | None = None,
        scale: float = 1.0,
        deadzone: float = 0.001,
        buttons: Mapping[int, tuple[int, float]] | None = None,
    ):
        try:
            import pyspacemouse  # optional, not a robojax dependency
        except ImportError as e:
            raise RuntimeError(
                "SpaceMouseIntervention needs the optional `pyspacemouse` package (and its hidapi"
                " system library): `pip install pyspacemouse`; or use --intervention=keyboard"
            ) from e
        axes = tuple(axes or self.AXES[: min(action_dim, 6)])
        unknown = [a for a in axes if a not in self.AXES]
        if unknown or len(axes) > action_dim:
            raise ValueError(f"SpaceMouse axes {axes} must be among {self.AXES}, at most {action_dim} of them")
        if not pyspacemouse.open():
            raise RuntimeError("pyspacemouse.open() found no SpaceMouse; check the USB connection and udev permissions")
        self._device = pyspacemouse
        self.action_dim, self.axes = action_dim, axes
        self.scale, self.deadzone = float(scale), float(deadzone)
        self.buttons = dict(buttons or {})  # button index -> (action dim, value)

    def poll(self, obs: np.ndarray | None = None) -> np.ndarray | None:
        state = self._device.read()
        action = np.zeros(self.action_dim, np.float32)
        for dim, axis in enumerate(self.axes):
            action[dim] = float(getattr(state, axis)) * self.scale
        pressed = False
        for index, (dim, value) in self.buttons.items():
            if index < len(state.buttons) and state.buttons[index]:
                action[dim], pressed = value, True
        if not pressed and np.all(np.abs(action) <= self.deadzone):
            return None
        return np.clip(action, -1.0, 1.0)

    def close(self) -> None:
        close = getattr(self._device, "close", None)
        if close is not None:
            close()


def make_intervention(kind: str, action_dim: int) -> InterventionSource | None:
    """`none`, `keyboard` or `spacemouse` (the `--intervention` flag)."""
    if kind == "none":
        return None
    if kind == "keyboard":
        return KeyboardIntervention(action_dim)
    if kind == "spacemouse":
        return SpaceMouseIntervention(action_dim)
    raise ValueError(f"unknown intervention source {kind!r}; choose none, keyboard or spacemouse")
