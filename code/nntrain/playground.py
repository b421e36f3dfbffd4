"""The optimizer playground of chapter 2: trajectories of six methods on 2-D functions, for the reader to vary.

Two versions of one playground («Песочница оптимизаторов», chapter 2):

* a **static** one that works in the built page without a kernel: ``precompute`` runs every method
  over a grid of steps α and coefficients β on a few functions, ``encode_paths`` packs the points
  as base64 int16, and ``render_html`` writes a self-contained snippet (inline JavaScript, the
  contours as small embedded PNGs, no external URL) that a notebook cell shows with
  ``IPython.display.HTML``;
* a **live** one for Colab, ``live()``: ipywidgets (7.x and 8.x) that re-run ``functions.run``
  from any start with any setting and redraw with matplotlib.

The update rules are not written here: ``rule`` takes them from ``nntrain.optim.trajectory_rule``
(the one definition of each method), so a trajectory of the playground is exactly the one
``functions.run`` gives with the same rule.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import math
import sys
from dataclasses import dataclass, field
from typing import Any, Callable, Sequence

import numpy as np
import torch

from . import functions as F
from . import rates

__all__ = [
    "Method", "Setting", "METHODS", "SETTINGS", "STATIC_FUNCTIONS", "BETAS", "N_LR", "QUICK_METHODS",
    "PlaygroundData", "rule", "lr_grid", "trajectory", "precompute", "encode_paths", "decode_paths",
    "contour_png", "render_html", "snippet", "same_as_run", "short", "steps_to_leave", "ANIMATIONS",
    "METHOD_COLORS", "animation_runs", "in_colab", "live_available", "live",
]


@dataclass(frozen=True)
class Method:
    """A method of the playground: its name in ``trajectory_rule``, a Russian label, its second parameter.

    The second slider is the momentum coefficient β (heavy ball, Nesterov), RMSProp's averaging
    coefficient ρ (torch's ``alpha``; the letter of notation.md) or Adam's β₁; GD and AdaGrad have none.
    """

    key: str
    label: str
    beta_label: str | None  # "β = {} (…)": {} is the value; None: no second parameter (slider off)


METHODS: dict[str, Method] = {m.key: m for m in (
    Method("gd", "Градиентный спуск", None),
    Method("heavy_ball", "Тяжёлый шарик", "β = {} (импульс)"),
    Method("nesterov", "Метод Нестерова", "β = {} (импульс)"),
    Method("adagrad", "AdaGrad", None),
    Method("rmsprop", "RMSProp", "ρ = {} (усреднение g²)"),
    Method("adam", "Adam", "β₁ = {}, β₂ = 0.999"),
)}

# The values of the second slider (β, ρ or β₁: the same grid for every method that has one).
BETAS: tuple[float, ...] = (0.0, 0.5, 0.8, 0.9, 0.99)
# The methods a quick run of the page precomputes (the ones its «что попробовать» uses).
QUICK_METHODS: tuple[str, ...] = ("gd", "heavy_ball", "adagrad")
# Steps α on the slider: N_LR values, a factor 2 apart, centred on the setting's value for the method.
N_LR = 7
ADAM_BETA2 = 0.999


@dataclass(frozen=True)
class Setting:
    """A function of the playground with its start, the number of steps and the centre of each α grid."""

    key: str
    label: str
    make: Callable[[], F.Function2D]
    x0: tuple[float, float]
    steps: int
    lr: dict[str, float] = field(default_factory=dict)


def _quadratic() -> F.Function2D:
    return F.quadratic((1.0, 50.0), angle=0.0)


def _rotated() -> F.Function2D:
    return F.quadratic((1.0, 50.0), angle=math.pi / 4)


# The start of the axis-aligned quadratic and the same point turned with the function by 45°.
_QUAD_X0 = (-1.9, 0.4)
_ROTATED_X0 = tuple(float(v) for v in F.rotation(math.pi / 4) @ torch.tensor(_QUAD_X0, dtype=torch.float64))

SETTINGS: dict[str, Setting] = {s.key: s for s in (
    Setting("quadratic", "Квадратичная, κ = 50", _quadratic, _QUAD_X0, 60,
            {"gd": 0.02, "heavy_ball": 0.02, "nesterov": 0.02, "adagrad": 0.5, "rmsprop": 0.02, "adam": 0.1}),
    Setting("rotated", "Она же, повёрнутая на 45°", _rotated, _ROTATED_X0, 60,
            {"gd": 0.02, "heavy_ball": 0.02, "nesterov": 0.02, "adagrad": 0.5, "rmsprop": 0.02, "adam": 0.1}),
    Setting("rosenbrock", "Функция Розенброка", F.rosenbrock, (-1.5, 2.0), 200,
            {"gd": 1e-3, "heavy_ball": 1e-3, "nesterov": 1e-3, "adagrad": 0.2, "rmsprop": 0.01, "adam": 0.05}),
    Setting("saddle", "Седло x² − y²", F.saddle, (-1.4, 0.01), 60,
            {"gd": 0.05, "heavy_ball": 0.05, "nesterov": 0.05, "adagrad": 0.1, "rmsprop": 0.02, "adam": 0.05}),
    Setting("levy", "Функция Леви", F.levy, (-7.0, 7.0), 100,
            {"gd": 0.05, "heavy_ball": 0.05, "nesterov": 0.05, "adagrad": 1.0, "rmsprop": 0.1, "adam": 0.5}),
)}
STATIC_FUNCTIONS: tuple[str, ...] = ("quadratic", "rotated", "rosenbrock", "saddle")

# Points are stored relative to the plotting box: u = (x − xmin)/(xmax − xmin), kept while
# −0.5 ≤ u ≤ 1.5 (half a box beyond each side), as round(u·SCALE) in int16; OUT marks «left the figure».
SCALE = 16000
OUT = -32768
_MARGIN = 0.5


def _check_method(method: str) -> Method:
    if method not in METHODS:
        raise ValueError(f"unknown method {method!r}; expected one of {list(METHODS)}")
    return METHODS[method]


def _check_setting(function: str) -> Setting:
    if function not in SETTINGS:
        raise ValueError(f"unknown function {function!r}; expected one of {list(SETTINGS)}")
    return SETTINGS[function]


def _hyper(method: str, lr: float, beta: float | None) -> dict[str, Any]:
    """The keyword arguments of ``trajectory_rule`` for the playground's (α, β) of ``method``.

    The momentum family names its step ``alpha`` (the momentum chapter's letters); the adaptive
    rules take torch's names: ``lr``, RMSProp's ``alpha`` (the decay of the average of g²), ``betas``.
    """
    m = _check_method(method)
    if not (isinstance(lr, (int, float)) and math.isfinite(lr) and lr > 0):
        raise ValueError(f"the step lr must be a positive finite number, got {lr!r}")
    if m.beta_label is None:
        if beta not in (None, 0, 0.0):
            raise ValueError(f"{method} has no β, got beta={beta!r}")
        return {"alpha": float(lr)} if method == "gd" else {"lr": float(lr)}
    if beta is None or not (isinstance(beta, (int, float)) and 0 <= beta < 1):
        raise ValueError(f"{method} needs a β in [0, 1), got beta={beta!r}")
    beta = float(beta)
    if method in ("heavy_ball", "nesterov"):
        return {"alpha": float(lr), "beta": beta}
    if method == "rmsprop":
        return {"lr": float(lr), "alpha": beta}
    return {"lr": float(lr), "betas": (beta, ADAM_BETA2)}


def rule(method: str, lr: float, beta: float | None = None):
    """The update rule ``(x, grad_fn, state) -> (x, state)`` of ``method`` with step ``lr`` and ``beta``.

    β is the momentum coefficient for the heavy ball and Nesterov, the decay of the average of g²
    (torch's ``alpha``) for RMSProp and β₁ for Adam (β₂ = 0.999); GD and AdaGrad have none.
    """
    from .optim import trajectory_rule

    return trajectory_rule(method, **_hyper(method, lr, beta))


def lr_grid(function: str, method: str, n: int = N_LR) -> tuple[float, ...]:
    """The steps α of the slider: ``n`` values a factor 2 apart around the setting's centre."""
    s = _check_setting(function)
    _check_method(method)
    if not (isinstance(n, int) and n >= 1 and n % 2 == 1):
        raise ValueError(f"n must be a positive odd int (the centre is in the middle), got {n!r}")
    c = s.lr[method]
    return tuple(float(f"{c * 2.0 ** (i - n // 2):.4g}") for i in range(n))


def trajectory(function: str, method: str, lr: float, beta: float | None = None, x0=None,
               steps: int | None = None) -> F.Trajectory:
    """One run of the playground: ``functions.run`` of ``rule(method, lr, beta)`` on the setting's function."""
    s = _check_setting(function)
    return F.run(s.make(), s.x0 if x0 is None else x0, s.steps if steps is None else steps,
                 update=rule(method, lr, beta))


@dataclass
class PlaygroundData:
    """Every precomputed trajectory: ``paths[f][m]`` has shape (len(lrs[f][m]), n_β, steps + 1, 2).

    n_β is ``len(betas)`` for a method with β and 1 for GD and AdaGrad; a point after the run left
    the box by more than half its size is NaN, and so is every later one. ``values`` holds f there.
    """

    functions: tuple[str, ...]
    methods: tuple[str, ...]
    betas: tuple[float, ...]
    lrs: dict[str, dict[str, tuple[float, ...]]]
    paths: dict[str, dict[str, np.ndarray]]
    values: dict[str, dict[str, np.ndarray]]

    def path(self, function: str, method: str, lr_index: int, beta_index: int = 0) -> np.ndarray:
        """The points (n, 2) of one run, cut where it left the figure."""
        p = self.paths[function][method][lr_index, beta_index]
        keep = ~np.isnan(p[:, 0])
        return p[keep]

    def end(self, function: str, method: str, lr_index: int, beta_index: int = 0) -> tuple[float, int | None]:
        """How one run ends: (f at its last point kept, None) if it stayed near the figure to the end,
        else (f at its last point kept, the step at which it left — its first point cut)."""
        p = self.paths[function][method][lr_index, beta_index]
        kept = int((~np.isnan(p[:, 0])).sum())
        value = float(self.values[function][method][lr_index, beta_index, kept - 1])
        return value, (None if kept == p.shape[0] else kept)

    @property
    def n_runs(self) -> int:
        return sum(a.shape[0] * a.shape[1] for fm in self.paths.values() for a in fm.values())


def steps_to_leave(path, level: float = 1.0, axis: int = 1) -> int | None:
    """The first step at which |coordinate ``axis``| > ``level`` (a point cut as NaN counts), or None.

    On the saddle x² − y² of the page it is the step at which a run has left the ridge y = 0.
    """
    p = path.path if hasattr(path, "path") else path
    p = p.detach().cpu().numpy() if hasattr(p, "detach") else np.asarray(p, dtype=float)
    if p.ndim != 2 or not 0 <= axis < p.shape[1]:
        raise ValueError(f"path must have shape (n, d) with d > axis = {axis}, got {p.shape}")
    if not (math.isfinite(level) and level > 0):
        raise ValueError(f"level must be a positive finite number, got {level!r}")
    c = p[:, axis]
    out = ~np.isfinite(c) | (np.abs(np.nan_to_num(c, nan=np.inf)) > level)
    return int(np.argmax(out)) if out.any() else None


_SUPERSCRIPT = str.maketrans("-0123456789", "⁻⁰¹²³⁴⁵⁶⁷⁸⁹")


def short(x: float) -> str:
    """A number as the page's prose writes it: two significant digits, 0.074 or 3.5 or 42, and a power
    of ten outside [0.01, 100): 3.9·10⁻⁴, −3.2·10³, 10⁻³ (not 1·10⁻³); the minus sign is «−»."""
    x = float(x)
    if not math.isfinite(x):
        raise ValueError(f"cannot write {x!r} as a number of the prose")
    if x == 0:
        return "0"
    sign = "−" if x < 0 else ""
    a = abs(x)
    text = f"{a:.2g}"
    if 1e-2 <= float(text) < 100:
        return sign + text
    mantissa, exponent = f"{a:.1e}".split("e")
    power = "10" + str(int(exponent)).translate(_SUPERSCRIPT)
    return sign + (power if mantissa == "1.0" else f"{mantissa}·{power}")


def _betas_of(method: str, betas: Sequence[float]) -> tuple:
    return tuple(betas) if METHODS[method].beta_label else (None,)


def _cut(path: np.ndarray, box) -> np.ndarray:
    """NaN from the first point that is not finite or more than half a box outside the box."""
    lo = np.array([box[0], box[2]])
    span = np.array([box[1] - box[0], box[3] - box[2]])
    u = (path - lo) / span
    bad = ~np.isfinite(u).all(1) | (u < -_MARGIN).any(1) | (u > 1 + _MARGIN).any(1)
    out = path.copy()
    if bad.any():
        out[int(np.argmax(bad)):] = np.nan
    return out


def precompute(functions: Sequence[str] = STATIC_FUNCTIONS, methods: Sequence[str] = tuple(METHODS),
               betas: Sequence[float] = BETAS, n_lr: int = N_LR) -> PlaygroundData:
    """Run every method on every function over the grid of α (``lr_grid``) and β (``betas``)."""
    if not functions or not methods:
        raise ValueError("give at least one function and one method")
    for f in functions:
        _check_setting(f)
    for m in methods:
        _check_method(m)
    if not betas or not all(isinstance(b, (int, float)) and 0 <= b < 1 for b in betas):
        raise ValueError(f"betas must be numbers in [0, 1), got {betas!r}")
    lrs: dict = {}
    paths: dict = {}
    values: dict = {}
    for f in functions:
        s = SETTINGS[f]
        fn = s.make()
        lrs[f], paths[f], values[f] = {}, {}, {}
        for m in methods:
            grid = lr_grid(f, m, n_lr)
            bs = _betas_of(m, betas)
            p = np.full((len(grid), len(bs), s.steps + 1, 2), np.nan)
            for i, lr in enumerate(grid):
                for j, b in enumerate(bs):
                    t = F.run(fn, s.x0, s.steps, update=rule(m, lr, b))
                    k = t.path.shape[0]
                    p[i, j, :k] = t.path.numpy()
                    p[i, j] = _cut(p[i, j], fn.box)
            with torch.no_grad():
                v = fn.value(torch.from_numpy(np.nan_to_num(p, nan=0.0))).numpy()
            v[np.isnan(p[..., 0])] = np.nan
            lrs[f][m], paths[f][m], values[f][m] = grid, p, v
    return PlaygroundData(tuple(functions), tuple(methods), tuple(float(b) for b in betas), lrs, paths, values)


def same_as_run(data: PlaygroundData, function: str, method: str, lr_index: int, beta_index: int = 0) -> bool:
    """True when the stored points of one grid run are, bit for bit, the first points of a fresh
    ``functions.run`` with the same rule (the points after the run left the figure are not stored)."""
    if not isinstance(data, PlaygroundData):
        raise TypeError(f"data must be a PlaygroundData (from precompute), got {type(data).__name__}")
    grid = data.paths[function][method]
    i, j = range(grid.shape[0])[lr_index], range(grid.shape[1])[beta_index]
    beta = data.betas[j] if METHODS[method].beta_label else None
    kept = data.path(function, method, i, j)
    again = trajectory(function, method, data.lrs[function][method][i], beta).path.numpy()
    return bool(np.array_equal(kept, again[:len(kept)]))


def encode_paths(points: np.ndarray, box) -> str:
    """Points (..., 2) as base64 of little-endian int16: round(u·SCALE) of the box coordinate u, OUT for NaN."""
    points = np.asarray(points, dtype=float)
    if points.ndim < 1 or points.shape[-1] != 2:
        raise ValueError(f"points must have shape (..., 2), got {points.shape}")
    lo = np.array([box[0], box[2]])
    span = np.array([box[1] - box[0], box[3] - box[2]])
    if not (span > 0).all():
        raise ValueError(f"box must be (xmin, xmax, ymin, ymax) with xmin < xmax and ymin < ymax, got {box!r}")
    u = (points - lo) / span
    nan = np.isnan(u).any(-1, keepdims=True) | np.zeros_like(u, dtype=bool)
    if (np.abs(u[~nan] - 0.5) > 0.5 + _MARGIN + 1e-9).any():
        raise ValueError("points lie more than half a box outside the box: cut them first (NaN)")
    q = np.where(nan, OUT, np.round(np.nan_to_num(u) * SCALE)).astype("<i2")
    return base64.b64encode(q.tobytes()).decode("ascii")


def decode_paths(data: str, box, shape: Sequence[int]) -> np.ndarray:
    """The inverse of ``encode_paths`` (up to rounding: |error| ≤ box size / (2·SCALE)), NaN for OUT."""
    q = np.frombuffer(base64.b64decode(data), dtype="<i2")
    if q.size != int(np.prod(shape)):
        raise ValueError(f"{q.size} numbers do not fill the shape {tuple(shape)}")
    q = q.reshape(shape)
    lo = np.array([box[0], box[2]])
    span = np.array([box[1] - box[0], box[3] - box[2]])
    out = q / SCALE * span + lo
    out[(q == OUT).any(-1)] = np.nan
    return out


def contour_png(fn: F.Function2D, width: int = 360, height: int = 360, colors: int = 24) -> bytes:
    """The contour plot of ``fn`` over its box, edge to edge (no axes), as a small palette PNG.

    Levels are log-spaced for a function with a minimiser (dense near it) and even for one without
    (the saddle: log levels would paint its whole centre one grey). The palette keeps the yellow of
    the minimiser's star, which a median cut of a mostly grey picture would turn grey.
    """
    import matplotlib.pyplot as plt
    from matplotlib.colors import to_rgb
    from PIL import Image

    from . import plot

    if not (isinstance(width, int) and isinstance(height, int) and 16 <= width <= 2000 and 16 <= height <= 2000):
        raise ValueError(f"width and height must be ints in [16, 2000], got {width!r}, {height!r}")
    fig = plt.figure(figsize=(width / 100, height / 100), dpi=100)
    ax = fig.add_axes((0, 0, 1, 1))
    plot.contour(ax, fn, n=160, n_levels=18, log=bool(getattr(fn, "minimizers", ())))
    ax.set_axis_off()
    buf = io.BytesIO()
    fig.savefig(buf, format="png", dpi=100, bbox_inches=None, pad_inches=0)
    plt.close(fig)
    buf.seek(0)
    rgb = Image.open(buf).convert("RGB")
    star = tuple(int(round(255 * v)) for v in to_rgb(plot._MIN_MARKER["color"]))
    sample = Image.new("RGB", (width + max(width // 4, 1), height), star)
    sample.paste(rgb, (0, 0))
    palette = sample.quantize(colors=colors, method=Image.Quantize.MEDIANCUT)
    img = rgb.quantize(palette=palette, dither=Image.Dither.NONE)
    out = io.BytesIO()
    img.save(out, format="PNG", optimize=True)
    return out.getvalue()


def _sig(x: float) -> float | None:
    return None if not math.isfinite(x) else float(f"{x:.3g}")


def _payload(data: PlaygroundData, png_size: int) -> dict:
    """The JSON the page's script reads: labels, grids, boxes, the encoded points and the end of each run."""
    funcs = []
    for f in data.functions:
        s = SETTINGS[f]
        fn = s.make()
        runs, ends = [], []
        for m in data.methods:
            p = data.paths[f][m]
            runs.append(encode_paths(p, fn.box))
            for i in range(p.shape[0]):
                for j in range(p.shape[1]):
                    value, left = data.end(f, m, i, j)
                    ends.append([-1 if left is None else left, _sig(value)])
        funcs.append({
            "key": f, "label": s.label, "box": list(fn.box), "steps": s.steps, "x0": list(s.x0),
            "png": base64.b64encode(contour_png(fn, png_size, png_size)).decode("ascii"),
            "lrs": [list(data.lrs[f][m]) for m in data.methods], "runs": runs, "ends": ends,
        })
    methods = [{"key": m, "label": METHODS[m].label, "beta": METHODS[m].beta_label} for m in data.methods]
    return {"scale": SCALE, "out": OUT, "betas": list(data.betas), "methods": methods, "functions": funcs}


_CSS = """
#@ID@{max-width:480px;margin:1em auto;font-size:16px;line-height:1.35}
#@ID@ .pg-row{display:flex;flex-wrap:wrap;gap:.4em 1em;margin:.3em 0}
#@ID@ label{display:block;flex:1 1 200px;min-width:0}
#@ID@ select{width:100%;font-size:16px;padding:.35em;margin-top:.15em;box-sizing:border-box}
#@ID@ input[type=range]{width:100%;height:34px;margin:.1em 0;touch-action:pan-y}
#@ID@ input[type=range]:disabled{opacity:.35}
#@ID@ svg{width:100%;height:auto;display:block;touch-action:pan-y}
#@ID@ .pg-info{min-height:2.8em;margin:.3em 0}
#@ID@ .pg-presets{display:flex;flex-wrap:wrap;gap:.4em}
#@ID@ .pg-presets button{font-size:15px;padding:.45em .7em;border:1px solid #888;border-radius:6px;
background:#f4f4f4;color:#222;cursor:pointer}
"""

_JS = r"""
(function(){
const root=document.getElementById('@ID@');
const D=JSON.parse(root.querySelector('script[type="application/json"]').textContent);
const W=@W@,H=@W@;
const q=s=>root.querySelector('[data-role="'+s+'"]');
const fnSel=q('fn'),mSel=q('method'),lr=q('lr'),beta=q('beta');
const runs=D.functions.map(f=>f.runs.map(r=>{const b=atob(r),a=new Uint8Array(b.length);
  for(let i=0;i<b.length;i++)a[i]=b.charCodeAt(i);return new Int16Array(a.buffer);}));
D.functions.forEach((f,i)=>fnSel.add(new Option(f.label,i)));
D.methods.forEach((m,i)=>mSel.add(new Option(m.label,i)));
beta.max=D.betas.length-1;
const sup={'-':'⁻','0':'⁰','1':'¹','2':'²','3':'³','4':'⁴','5':'⁵','6':'⁶','7':'⁷','8':'⁸','9':'⁹'};
function fmt(x){if(x===null)return '—';if(x===0)return '0';const a=Math.abs(x),sg=x<0?'−':'';
  if(a>=1e-3&&a<1e4)return sg+(+a.toPrecision(3)).toString();
  const [m,e]=a.toExponential(1).split('e');
  return sg+(+m).toString()+'·10'+String(+e).split('').map(c=>sup[c]).join('');}
let prev='';
function draw(){
  const fi=+fnSel.value,mi=+mSel.value,f=D.functions[fi],m=D.methods[mi];
  const hasB=m.beta!==null,nb=hasB?D.betas.length:1,i=+lr.value,j=hasB?+beta.value:0;
  beta.disabled=!hasB;
  q('lr-label').textContent='Шаг α = '+fmt(f.lrs[mi][i]);
  q('beta-label').textContent=hasB?m.beta.replace('{}',fmt(D.betas[+beta.value])):'Второго параметра у метода нет';
  q('img').setAttribute('href','data:image/png;base64,'+f.png);
  ['xmin','xmax','ymin','ymax'].forEach((k,n)=>q(k).textContent=fmt(f.box[n]));
  const r=runs[fi][mi],n=f.steps+1,base=(i*nb+j)*n*2,s=D.scale;
  let d='',last=null;
  for(let k=0;k<n;k++){const a=r[base+2*k],b=r[base+2*k+1];if(a===D.out)break;
    const x=(a/s*W).toFixed(1),y=((1-b/s)*H).toFixed(1);d+=(k?'L':'M')+x+' '+y;last=[x,y];}
  const p=q('path');
  if(prev&&p.getAttribute('d')!==d)q('prev').setAttribute('d',p.getAttribute('d'));
  p.setAttribute('d',d);prev=d;
  const s0=q('start'),e=q('end'),x0=(f.x0[0]-f.box[0])/(f.box[1]-f.box[0]),y0=(f.x0[1]-f.box[2])/(f.box[3]-f.box[2]);
  s0.setAttribute('cx',(x0*W).toFixed(1));s0.setAttribute('cy',((1-y0)*H).toFixed(1));
  if(last){e.setAttribute('cx',last[0]);e.setAttribute('cy',last[1]);}
  let idx=0;for(let t=0;t<mi;t++)idx+=f.lrs[t].length*(D.methods[t].beta!==null?D.betas.length:1);
  const end=f.ends[idx+i*nb+j];
  q('info').textContent=end[0]>=0?('Траектория ушла далеко за пределы рисунка на шаге '+end[0]+'.'):
    ('После '+f.steps+' шагов: f = '+fmt(end[1])+'.');
  root.dataset.setting=[f.key,m.key,i,j].join('|');
}
function reset(){const f=D.functions[+fnSel.value];lr.max=f.lrs[+mSel.value].length-1;}
fnSel.addEventListener('change',()=>{q('prev').setAttribute('d','');prev='';reset();draw();});
mSel.addEventListener('change',()=>{reset();draw();});
lr.addEventListener('input',draw);beta.addEventListener('input',draw);
root.querySelectorAll('.pg-presets button').forEach(b=>b.addEventListener('click',()=>{
  const v=b.dataset.preset.split('|');
  fnSel.value=D.functions.findIndex(f=>f.key===v[0]);mSel.value=D.methods.findIndex(m=>m.key===v[1]);
  reset();lr.value=v[2];beta.value=v[3];q('prev').setAttribute('d','');prev='';draw();}));
fnSel.value=@F@;mSel.value=@M@;reset();lr.value=@I@;beta.value=@J@;draw();
})();
"""


def render_html(data: PlaygroundData, start: tuple[str, str, int, int] | None = None,
                presets: Sequence[tuple[str, tuple[str, str, int, int]]] = (), png_size: int = 360) -> str:
    """The self-contained HTML of the static playground (inline CSS, JS and data; no external URL).

    ``start`` = (function, method, α index, β index) is the setting shown first; ``presets`` are
    buttons ``(label, setting)`` that jump to a setting (the page's «что попробовать»).
    """
    if not isinstance(data, PlaygroundData):
        raise TypeError(f"data must be a PlaygroundData (from precompute), got {type(data).__name__}")
    start = start or (data.functions[0], data.methods[0], N_LR // 2, 0)
    for label, setting in [("start", start), *presets]:
        f, m, i, j = setting
        if f not in data.functions or m not in data.methods:
            raise ValueError(f"{label}: unknown function or method in {setting!r}; "
                             f"this data has {list(data.functions)} and {list(data.methods)}")
        n_i, n_j = data.paths[f][m].shape[:2]
        if not (0 <= i < n_i and 0 <= j < max(n_j, len(data.betas))):
            raise ValueError(f"{label}: indices {(i, j)} outside the grid ({n_i} steps α, {n_j} values β)")
    payload = json.dumps(_payload(data, png_size), ensure_ascii=False, separators=(",", ":"))
    uid = "nnt-pg-" + hashlib.sha1(payload.encode()).hexdigest()[:8]
    w = png_size
    js = _JS
    for key, value in (("@ID@", uid), ("@W@", w), ("@F@", data.functions.index(start[0])),
                       ("@M@", data.methods.index(start[1])), ("@I@", start[2]), ("@J@", start[3])):
        js = js.replace(key, str(value))
    buttons = "".join(f'<button type="button" data-preset="{f}|{m}|{i}|{j}">{label}</button>'
                      for label, (f, m, i, j) in presets)
    svg = (f'<svg viewBox="-44 -8 {w + 52} {w + 40}" role="img" aria-label="Линии уровня функции и траектория '
           f'выбранного метода">'
           f'<clipPath id="{uid}-clip"><rect x="0" y="0" width="{w}" height="{w}"/></clipPath>'
           f'<image data-role="img" x="0" y="0" width="{w}" height="{w}"/>'
           f'<g clip-path="url(#{uid}-clip)">'
           f'<rect x="0" y="0" width="{w}" height="{w}" fill="none" stroke="#555"/>'
           f'<path data-role="prev" d="" fill="none" stroke="#777" stroke-width="1.5" stroke-dasharray="4 3"/>'
           f'<path data-role="path" d="" fill="none" stroke="#D55E00" stroke-width="2.2" '
           f'stroke-linejoin="round"/>'
           f'<circle data-role="start" r="5" fill="#0072B2" stroke="white"/>'
           f'<circle data-role="end" r="4.5" fill="#D55E00" stroke="white" stroke-width="1.2"/></g>'
           f'<g font-size="14" fill="#222">'
           f'<text data-role="xmin" x="0" y="{w + 18}" text-anchor="start"></text>'
           f'<text data-role="xmax" x="{w}" y="{w + 18}" text-anchor="end"></text>'
           f'<text x="{w / 2}" y="{w + 20}" text-anchor="middle" font-style="italic">x</text>'
           f'<text data-role="ymin" x="-4" y="{w}" text-anchor="end"></text>'
           f'<text data-role="ymax" x="-4" y="12" text-anchor="end"></text>'
           f'<text x="-12" y="{w / 2}" text-anchor="end" font-style="italic">y</text></g></svg>')
    return (f'<div class="nnt-playground" id="{uid}">'
            f'<style>{_CSS.replace("@ID@", uid)}</style>'
            f'<div class="pg-row"><label>Функция<select data-role="fn"></select></label>'
            f'<label>Метод<select data-role="method"></select></label></div>'
            f'<div class="pg-row"><label><span data-role="lr-label">Шаг α</span>'
            f'<input type="range" data-role="lr" min="0" max="{N_LR - 1}" step="1" value="{N_LR // 2}"></label>'
            f'<label><span data-role="beta-label">β</span>'
            f'<input type="range" data-role="beta" min="0" max="{len(data.betas) - 1}" step="1" value="0">'
            f'</label></div>{svg}'
            f'<p class="pg-info" data-role="info" aria-live="polite"></p>'
            + (f'<div class="pg-presets">{buttons}</div>' if buttons else "")
            + f'<script type="application/json">{payload}</script><script>{js}</script></div>')


def snippet(html: str):
    """``IPython.display.HTML`` of the snippet: myst-nb writes it into the page as it is."""
    from IPython.display import HTML

    if "://" in html.replace("http://www.w3.org/2000/svg", ""):
        raise ValueError("the playground must not load anything from outside the page")
    return HTML(html)


# ---------------------------------------------------------------- the animations of the page

_RAVINE_HB = rates.heavy_ball_params(1.0, 50.0)
_RAVINE_NAG = rates.nesterov_params(1.0, 50.0)

# One dict per GIF of ``scripts/make_animations.py``: the function, the start, the number of steps
# and, per method, the ``trajectory_rule`` name and options (``legend``: where the legend hides no
# trail, "lower right" when not given). The page's captions glue these values.
ANIMATIONS: dict[str, dict[str, Any]] = {
    "gd_vs_momentum_ravine": {
        "function": "rotated", "x0": _ROTATED_X0, "steps": 60, "frames": 60,
        "methods": {
            "gd": {"rule": "gd", "alpha": 2.0 / 51.0},
            "heavy_ball": {"rule": "heavy_ball", "alpha": _RAVINE_HB[0], "beta": _RAVINE_HB[1]},
            "nesterov": {"rule": "nesterov", "alpha": _RAVINE_NAG[0], "beta": _RAVINE_NAG[1]},
        },
    },
    "adagrad_vs_gd_saddle": {
        "function": "saddle", "x0": (-1.4, 1e-3), "steps": 60, "frames": 60,
        "methods": {"gd": {"rule": "gd", "alpha": 0.1}, "adagrad": {"rule": "adagrad", "lr": 0.1}},
    },
    "rmsprop_vs_adagrad": {
        "function": "rosenbrock", "x0": (-1.5, 2.0), "steps": 800, "frames": 80, "legend": "upper center",
        "methods": {"adagrad": {"rule": "adagrad", "lr": 0.5},
                    "rmsprop": {"rule": "rmsprop", "lr": 0.01, "alpha": 0.99}},
    },
    "adam_family_rosenbrock": {
        "function": "rosenbrock", "x0": (-1.5, 2.0), "steps": 800, "frames": 80, "legend": "upper center",
        "methods": {
            "gd": {"rule": "gd", "alpha": 1e-3},
            "heavy_ball": {"rule": "heavy_ball", "alpha": 1e-3, "beta": 0.9},
            "rmsprop": {"rule": "rmsprop", "lr": 0.01, "alpha": 0.99},
            "adam": {"rule": "adam", "lr": 0.05, "betas": (0.9, 0.999)},
        },
    },
}

# The colour of each method in the animations (the book's COLORS where it has one).
METHOD_COLORS = {"gd": "#0072B2", "heavy_ball": "#D55E00", "nesterov": "#009E73", "adagrad": "#E69F00",
                 "rmsprop": "#000000", "adam": "#CC79A7"}


def animation_runs(name: str) -> dict[str, F.Trajectory]:
    """The trajectories of one animation of ``ANIMATIONS``, keyed by method, from ``functions.run``."""
    from .optim import trajectory_rule

    if name not in ANIMATIONS:
        raise ValueError(f"unknown animation {name!r}; expected one of {list(ANIMATIONS)}")
    a = ANIMATIONS[name]
    fn = SETTINGS[a["function"]].make()
    out = {}
    for m, opts in a["methods"].items():
        hyper = {k: v for k, v in opts.items() if k != "rule"}
        out[m] = F.run(fn, a["x0"], a["steps"], update=trajectory_rule(opts["rule"], **hyper))
    return out


# ---------------------------------------------------------------- the live version (Colab)


def in_colab() -> bool:
    """True inside Google Colab (its kernel imports ``google.colab``)."""
    return "google.colab" in sys.modules


def live_available() -> bool:
    """True when ipywidgets can be shown: a running IPython kernel and the package installed."""
    try:
        import ipywidgets  # noqa: F401
        from IPython import get_ipython
    except ImportError:
        return False
    shell = get_ipython()
    return shell is not None and getattr(shell, "kernel", None) is not None


def live(function: str = "rosenbrock", method: str = "adam", steps: int | None = None):
    """The playground with ipywidgets (7.x in Colab, 8.x here): any function, method, α, β, start and length.

    Every change re-runs ``functions.run`` with ``rule`` and redraws the contour and the trajectory.
    Returns the widget box (already displayed).
    """
    import ipywidgets as W
    import matplotlib.pyplot as plt
    from IPython.display import display

    from . import plot

    s = _check_setting(function)
    _check_method(method)
    style = {"description_width": "initial"}
    wide = W.Layout(width="100%", max_width="480px")
    fn_w = W.Dropdown(options=[(x.label, x.key) for x in SETTINGS.values()], value=function,
                      description="Функция", style=style, layout=wide)
    m_w = W.Dropdown(options=[(x.label, x.key) for x in METHODS.values()], value=method,
                     description="Метод", style=style, layout=wide)
    lr_w = W.FloatLogSlider(value=s.lr[method], base=10, min=-5, max=1, step=0.05, description="шаг α",
                            readout_format=".2g", style=style, layout=wide, continuous_update=False)
    beta_w = W.FloatSlider(value=0.9, min=0.0, max=0.999, step=0.001, description="β", readout_format=".3f",
                           style=style, layout=wide, continuous_update=False)
    x_w = W.FloatText(value=s.x0[0], description="x₀", style=style, layout=W.Layout(width="48%"))
    y_w = W.FloatText(value=s.x0[1], description="y₀", style=style, layout=W.Layout(width="48%"))
    n_w = W.IntSlider(value=steps or s.steps, min=1, max=2000, description="шагов", style=style, layout=wide,
                      continuous_update=False)
    out = W.Output()
    busy = [False]  # True while a change of function or method resets several widgets at once

    def redraw(*_):
        if busy[0]:
            return
        st, m = SETTINGS[fn_w.value], METHODS[m_w.value]
        beta_w.disabled = m.beta_label is None
        beta_w.description = (m.beta_label or "β (нет)").split(" = ")[0]
        with out:
            out.clear_output(wait=True)
            fn = st.make()
            try:
                t = F.run(fn, [x_w.value, y_w.value], n_w.value,
                          update=rule(m.key, lr_w.value, None if m.beta_label is None else beta_w.value))
            except ValueError as err:
                print(f"Не получилось: {err}")
                return
            fig, ax = plot.subplots(1, 1, width=4.6, height=4.2)
            plot.trajectories(ax, fn, {m.label: t}, colors={m.label: plot.PALETTE[1]}, n=120)
            end = "разошлась" if t.diverged else f"f = {float(t.values[-1]):.3g}"
            ax.set_title(f"{m.label}, α = {lr_w.value:.2g}: {end}", fontsize=11)
            plt.show()

    def new_function(change):
        st = SETTINGS[change["new"]]
        busy[0] = True
        try:
            x_w.value, y_w.value = st.x0
            n_w.value = st.steps
            lr_w.value = st.lr[m_w.value]
        finally:
            busy[0] = False
        redraw()

    def new_method(change):
        busy[0] = True
        try:
            lr_w.value = SETTINGS[fn_w.value].lr[change["new"]]
        finally:
            busy[0] = False
        redraw()

    fn_w.observe(new_function, names="value")
    m_w.observe(new_method, names="value")
    for w in (lr_w, beta_w, x_w, y_w, n_w):
        w.observe(redraw, names="value")
    box = W.VBox([fn_w, m_w, lr_w, beta_w, W.HBox([x_w, y_w]), n_w, out])
    display(box)
    redraw()
    return box
