"""Replay buffers, demonstration datasets and observation normalisers."""

from robojax.data import normalizer, replay
from robojax.data.demos import load_demos, save_demos
from robojax.data.normalizer import MinMaxNormalizer, ObsNormalizer, RunningMeanStd
from robojax.data.replay import ReplayBuffer, Transition

__all__ = [
    "MinMaxNormalizer",
    "ObsNormalizer",
    "ReplayBuffer",
    "RunningMeanStd",
    "Transition",
    "load_demos",
    "normalizer",
    "replay",
    "save_demos",
]
