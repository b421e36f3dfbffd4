"""Optimizers of the book: update rules as pure functions plus thin ``torch.optim`` wrappers.

Each family lives in its own module (``sgd``, ``adagrad``, ``rmsprop``, ``adam``, ``lbfgs``,
``proximal``, ``lars``, ``lamb``, ``shampoo`` — chapter 2, ``adafactor``, ``adam8bit`` — chapter 4,
``muon`` — chapter 8, ``sam`` — chapter 9, ``sign`` — chapter 11); ``trajectory`` turns every rule
into the ``update(x, grad_fn, state)`` protocol of ``nntrain.functions.run`` (``trajectory_rule``),
``bench`` times the wrappers against torch's foreach implementation, ``_common`` holds the shared
checks and the wrapper base class.
This package re-exports their public names.
"""

from .sgd import *  # noqa: F401,F403
from .adagrad import *  # noqa: F401,F403
from .rmsprop import *  # noqa: F401,F403
from .adam import *  # noqa: F401,F403
from .adafactor import *  # noqa: F401,F403
from .adam8bit import *  # noqa: F401,F403
from .trajectory import *  # noqa: F401,F403
from .bench import *  # noqa: F401,F403
from .muon import *  # noqa: F401,F403
from .sam import *  # noqa: F401,F403
from .lars import *  # noqa: F401,F403
from .lamb import *  # noqa: F401,F403
from .shampoo import *  # noqa: F401,F403
from .lbfgs import *  # noqa: F401,F403
from .proximal import *  # noqa: F401,F403
from .sign import *  # noqa: F401,F403
