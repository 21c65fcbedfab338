"""Synthetic France: one operator's antenna events over real communes, with ground truth."""

from mobiterra.simulate.core import simulate

__all__ = ["simulate"]
