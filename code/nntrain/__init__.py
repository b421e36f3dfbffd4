"""nntrain: the code of the course book «Обучение нейронных сетей с математической точки зрения».

Start every notebook with ``dev = nntrain.setup()``. Submodules (imported on demand):

* ``runtime`` — device, seeds, quick mode (``NNTRAIN_QUICK``), the environment line; ``data`` — datasets;
  ``plot`` — the book's figure style, contours and trajectories; ``models`` — MLP, GPT-2, Llama-like;
* chapter 1: ``autograd`` (reverse mode from scratch), ``gradcheck`` (finite differences),
  ``measure`` (FLOPs, forward vs reverse mode, timing), ``graphplot`` (computational graphs);
* chapter 2: ``optim`` (SGD, Adagrad, RMSprop, Adam, AdamW: pure rules, torch.optim wrappers, trajectory
  rules; Muon for chapter 8), ``functions`` (2-D test functions),
  ``rates`` (update rules and convergence rates), ``stochastic`` (mini-batches, gradient noise),
  ``adaptive`` and ``decay`` (experiments of the AdaGrad/Adam and AdamW sections), ``schedules``
  (learning-rate schedules as pure functions of the step), ``playground``
  (animations, the static and the live playground), ``newton``, ``optim.lbfgs`` and ``optim.proximal``
  (Newton, L-BFGS, ISTA/FISTA), ``optim.lars``, ``optim.lamb``, ``optim.shampoo`` and ``noise_scale``
  (large batches, preconditioning), ``tuning`` (learning-rate grids over seeds, intervals, tests);
* chapter 3: ``memory`` (saved tensors, bytes per parameter, the memory ledger, ``python -m nntrain.memory``);
* chapter 4: ``optim.adafactor``, ``optim.adam8bit``, ``quant`` (block-wise quantization) and ``memopt``
  (state bytes and the chapter's experiments);
* chapter 5: ``accumulation`` (the accumulating step, its pitfalls, DDP ``no_sync``);
* chapter 6: ``checkpointing`` (the checkpointed runner, the √n rule, Revolve, selective-checkpointing policies);
* chapter 7: ``precision`` (float formats, Kahan sums, loss scaling, master weights);
* chapter 8: ``norms`` (norms, dual norms, LMOs) and ``optim.muon``;
* chapter 9: ``landscape`` (random and filter-normalized directions, batched line/plane grids,
  interpolation and Bézier paths), ``sharpness`` (Hessian-vector products, top eigenvalue, edge of
  stability, Dinh's rescaling), ``explr`` (Li & Arora's exponential step) and ``optim.sam``;
* chapter 10: ``double_descent`` (min-norm least squares, Hastie et al.'s risk, random features) and
  ``grokking`` (modular arithmetic, Fourier analysis of embeddings, Gromov's analytic network, the
  one-layer transformer);
* chapter 11: ``init`` (initialization schemes, variance recursions, Jacobian spectra at init),
  ``imbalance`` (Zipf classes, per-group losses; sign descent is ``optim.sign``), ``profiles``
  (times to target, performance profiles, the AlgoPerf score, tuning budgets), ``benchmark`` (the
  chapter's small benchmark of workloads and search spaces) and ``speedrun`` (the record table);
* assignments: ``grade`` (the student release and the trusted grader, ``python -m nntrain.grade``).
"""

from .runtime import QUICK_ENV, device, env_info, is_quick, pick, seed_everything, setup

__version__ = "0.1.0"
__all__ = ["QUICK_ENV", "device", "env_info", "is_quick", "pick", "seed_everything", "setup", "__version__"]
