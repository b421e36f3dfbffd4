"""Optimizers of the book: update rules as pure functions plus thin ``torch.optim`` wrappers.

Each family lives in its own module (``sgd`` and ``adam`` — chapter 2, ``muon`` — chapter 8);
this package re-exports their public names.
"""

from .sgd import *  # noqa: F401,F403
from .adam import *  # noqa: F401,F403
from .muon import *  # noqa: F401,F403
