"""Models: TransformerLens bodies, gridworld agents (DT and BC), checkpoints, windows and policies.

Importing this package is cheap (no torch): ``sizes`` and ``sites`` describe a
model without building it, and ``checkpoint.read_config`` reads a checkpoint's
config without loading its weights.
"""
