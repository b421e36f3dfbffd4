"""Drawing a computational graph of :mod:`nntrain.autograd` with matplotlib (chapter 1).

Why not graphviz: the book must run anywhere (Colab, CI) without system binaries. The layout is
simple and deterministic: a node's column is its depth (longest path from an input), so every
edge points to the right, as the forward pass goes; the backward pass goes right to left.
"""

from __future__ import annotations

from .autograd import Tensor, topological_order


def layout(root: Tensor) -> dict[int, tuple[float, float]]:
    """(x, y) for every node id.

    An operation's x is its depth (longest chain of operations from the inputs); operations of
    one column are spread around y = 0. A leaf (input or parameter) sits half a column before its
    first consumer, above or below it, so that the chain of operations reads left to right.
    """
    order = topological_order(root)
    depth: dict[int, int] = {}
    consumers: dict[int, list[Tensor]] = {}
    for node in order:
        if node.op != "leaf":
            depth[id(node)] = 1 + max((depth[id(p)] for p in node.parents if p.op != "leaf"), default=0)
            for p in node.parents:
                consumers.setdefault(id(p), []).append(node)
    columns: dict[int, list[Tensor]] = {}
    for node in order:
        if node.op != "leaf":
            columns.setdefault(depth[id(node)], []).append(node)
    pos = {}
    for x, nodes in columns.items():
        for i, node in enumerate(nodes):
            pos[id(node)] = (float(x), 1.2 * ((len(nodes) - 1) / 2 - i))
    slots: dict[int, int] = {}
    for node in order:
        if node.op == "leaf":
            users = consumers.get(id(node))
            if not users:  # the root itself is a leaf
                pos[id(node)] = (0.0, 0.0)
                continue
            child = min(users, key=lambda c: depth[id(c)])
            cx, cy = pos[id(child)]
            k = slots.get(id(child), 0)
            slots[id(child)] = k + 1
            pos[id(node)] = (cx - 0.5, cy + (1.1 if k % 2 == 0 else -1.1) * (1 + k // 2))
    return pos


_SHORT = {"cross_entropy": "кросс-\nэнтропия", "log_softmax": "log-\nsoftmax"}


def node_label(node: Tensor) -> str:
    """The op (or the leaf's name) and the shape, e.g. ``matmul\\n(32, 16)``."""
    shape = "×".join(map(str, node.shape)) or "скаляр"
    title = node.name or ("вход" if node.op == "leaf" else _SHORT.get(node.op, node.op))
    return f"{title}\n{shape}"


def draw_graph(root: Tensor, ax=None, show_backward: bool = True, title: str | None = None):
    """Draw the graph that ends in ``root``: inputs/parameters, operations, the loss.

    Parameters (leaves with ``requires_grad``) are one colour, data another, operations a third;
    with ``show_backward`` dashed arrows show where gradients flow back.
    """
    import matplotlib.pyplot as plt

    from .plot import COLORS, PALETTE

    if not isinstance(root, Tensor):
        raise TypeError(f"draw_graph needs an nntrain.autograd.Tensor, got {type(root).__name__}")
    order = topological_order(root)
    pos = layout(root)
    if ax is None:
        width = 1.3 * (max(x for x, _ in pos.values()) + 1)
        height = 1.1 * max(2, max(abs(y) for _, y in pos.values()) * 2 + 1)
        from .plot import PAGE_WIDTH

        # never wider than the page: a wider figure is shrunk on the page and its labels get unreadable
        _, ax = plt.subplots(figsize=(min(PAGE_WIDTH, max(6.0, width)), max(2.8, height)))
    for node in order:
        for parent in node.parents:
            (x0, y0), (x1, y1) = pos[id(parent)], pos[id(node)]
            ax.annotate("", xy=(x1, y1), xytext=(x0, y0),
                        arrowprops=dict(arrowstyle="->", color=COLORS["forward"], lw=1.4, shrinkA=22, shrinkB=22))
            if show_backward and parent.requires_grad:
                ax.annotate("", xy=(x0, y0), xytext=(x1, y1),
                            arrowprops=dict(arrowstyle="->", color=COLORS["backward"], lw=1.1, ls="--",
                                            shrinkA=22, shrinkB=22, connectionstyle="arc3,rad=0.25"))
    for node in order:
        x, y = pos[id(node)]
        if node.op == "leaf":
            face = PALETTE[2] if node.requires_grad else "#BBBBBB"
        else:
            face = PALETTE[5] if node is not root else PALETTE[4]
        ax.text(x, y, node_label(node), ha="center", va="center", fontsize=8.5,
                bbox=dict(boxstyle="round,pad=0.35", fc=face, ec="#333333", alpha=0.9))
    xs = [p[0] for p in pos.values()]
    ys = [p[1] for p in pos.values()]
    ax.set_xlim(min(xs) - 0.6, max(xs) + 0.6)
    ax.set_ylim(min(ys) - 0.8, max(ys) + 0.8)
    ax.axis("off")
    handles = [plt.Line2D([], [], color=COLORS["forward"], label="прямой проход"),
               plt.Line2D([], [], color=COLORS["backward"], ls="--", label="обратный проход (градиенты)"),
               plt.Line2D([], [], marker="s", ls="", color=PALETTE[2], label="параметры"),
               plt.Line2D([], [], marker="s", ls="", color="#BBBBBB", label="данные"),
               plt.Line2D([], [], marker="s", ls="", color=PALETTE[5], label="операции")]
    if not show_backward:
        handles.pop(1)
    ax.legend(handles=handles, loc="upper center", bbox_to_anchor=(0.5, -0.02), ncol=3, fontsize=8.5)
    if title:
        ax.set_title(title)
    return ax
