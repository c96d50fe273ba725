"""What the learners that imitate demonstrations with action-chunk policies share.

Diffusion Policy and EBT-Policy train on the same episode datasets, cut into the same
(To observations, Tp actions) windows, with the same loop: windows on the device, gradient steps
scanned inside one jitted call, closed-loop success evaluation in batched MJX envs, Orbax
checkpoints with exact resume, and a saved policy (EMA parameters, normalisers, a JSON sidecar).
Each learner describes itself once as a `ChunkLearner` (`robojax.imitation.train`) and its
`train.py` is that description plus thin wrappers; its training-loop config derives from
`robojax.imitation.config.ChunkTrainConfig`.

Kept light: importing `robojax.imitation.config` pulls in no JAX.
"""
