"""Learners: one sub-package per algorithm, each with config, networks, losses, learner and train."""
