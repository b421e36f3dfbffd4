"""nntrain: the code of the course book «Обучение нейронных сетей с математической точки зрения».

Start every notebook with ``dev = nntrain.setup()``. Submodules (imported on demand):
``data`` (datasets), ``plot`` (the book's figure style), ``autograd`` (reverse mode from scratch,
chapter 1), ``gradcheck`` (finite differences), ``measure`` (FLOPs, saved tensors, timing).
"""

from .runtime import QUICK_ENV, device, env_info, is_quick, pick, seed_everything, setup

__version__ = "0.1.0"
__all__ = ["QUICK_ENV", "device", "env_info", "is_quick", "pick", "seed_everything", "setup", "__version__"]
