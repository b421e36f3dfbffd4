"""Optimizers of the book: update rules as pure functions plus thin ``torch.optim`` wrappers.

Each family lives in its own module (``sgd`` — chapter 2, ``muon`` — chapter 8, more to come);
this package re-exports their public names.
"""

from .sgd import *  # noqa: F401,F403
from .muon import *  # noqa: F401,F403
