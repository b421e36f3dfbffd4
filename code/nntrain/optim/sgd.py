"""SGD with momentum, dampening, Nesterov and weight decay (chapter 2). Being written."""

__all__: list[str] = []
