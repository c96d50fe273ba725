"""Replay buffers, demonstration datasets and observation normalisers."""

from robojax.data import normalizer, replay
from robojax.data.demos import load_demos, save_demos
from robojax.data.normalizer import RunningMeanStd
from robojax.data.replay import ReplayBuffer, Transition

__all__ = ["ReplayBuffer", "RunningMeanStd", "Transition", "load_demos", "normalizer", "replay", "save_demos"]
