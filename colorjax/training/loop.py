"""The training loop. It knows nothing about model families: it asks the objective for a
state, shards it, calls `train_step`, evaluates with `predict`, and checkpoints.

One batch's journey: `data.create_train_iterator` (grain, per-process numpy) ->
`parallel.shard_batch` (global jax.Array over the 'data' axis) -> jitted `train_step`.
"""

from __future__ import annotations

import functools
import math
import os
import signal
import time

import jax
import jax.numpy as jnp
import numpy as np
from tqdm import tqdm

from colorjax import data
from colorjax.platform import parallel
from colorjax.platform import progress
from colorjax.training import run_summary
from colorjax.training.checkpoint import TrainCheckpointer, abstract_train_state, restore_run
from colorjax.training.validation import validate_config
from colorjax.training.evaluate import (Evaluator, NonFiniteMetricsError, require_finite_metrics,
                               versus_gray_words, write_report)
from colorjax.objectives import make_objective
from colorjax.objectives.base import example_batch, uses_hints
from colorjax.objectives.frozen_backbone import (frozen_weights, load_frozen_like, with_frozen,
                                                 without_frozen)
from colorjax.training.writers import MetricWriter
from colorjax.training import warm_start


class NonFiniteLossError(RuntimeError):
    """The loss, the gradients or the parameters (EMA included) became NaN or Inf; the run
    stops, checkpoints stay intact (none is saved from such a step)."""


def num_train_steps(config) -> int:
    """`config.num_train_steps`, or `config.num_epochs` passes over the train split."""
    if config.num_epochs > 0:
        n = data.num_examples(config.data, config.data.train_split)
        return int(math.ceil(n / config.batch_size)) * int(config.num_epochs)
    return int(config.num_train_steps)


def _example_batch(config):
    """Shapes for `objective.init`: one image per device is enough."""
    return example_batch(config.data.image_size, jax.device_count())


def create_state(config, objective, mesh, total_steps: int, keep=None):
    """Initial train state, replicated on the mesh, from the run's seed; its optimizer's
    schedule spans `total_steps`. `keep(state)`, inside the jit, picks what is returned
    (what it leaves out is neither computed nor compiled)."""
    init_rng = jax.random.fold_in(jax.random.key(config.seed), 0)

    def init_state(rng, batch):
        state = objective.init(rng, batch, num_train_steps=total_steps)
        return state if keep is None else keep(state)

    repl, batch = parallel.replicated(mesh), _example_batch(config)
    # The replicated init needs no partitionable random bits, and XLA compiles the
    # non-partitionable threefry several times faster here (measured on CPU: 25 s vs 139 s
    # for the cpu UNet). Initial values depend only on the seed, as before.
    with jax.threefry_partitionable(False):
        if frozen_weights(objective) is None or objective.backbone_trainable:  # in params
            return jax.jit(init_state, out_shardings=repl)(init_rng, batch)
        # Frozen pretrained weights (a backbone, fusion's classifier) join the state after
        # the jit, as on a resume: returned by it, they were compiled into the program as
        # constants (a VGG16 backbone's init: 4.3 s against 1.8 s).
        shapes = jax.eval_shape(init_state, init_rng, batch)
        stripped = jax.jit(lambda r, b: without_frozen(init_state(r, b)),
                           out_shardings=repl)(init_rng, batch)
        return with_frozen(stripped, load_frozen_like(shapes, objective, repl))


def resume_or_create_state(config, objective, mesh, total_steps: int, ckpt, say=print):
    """(step, state, data state) of the newest checkpoint that verifies and restores, else
    (0, `create_state`, None). A resume restores onto `jax.eval_shape`'s abstract state (the
    frozen weights loaded as `restore_run` does): the init program is neither compiled nor
    run, which was most of a resumed run's time to its first step (10 s for DeOldify)."""
    if ckpt.all_steps():
        repl = parallel.replicated(mesh)
        target = load_frozen_like(
            abstract_train_state(objective, int(config.data.image_size), total_steps, repl),
            objective, repl)
        start, state, data_state = ckpt.restore_newest_good(target, report=say)
        if start:
            return start, state, data_state
    return 0, warm_start.initial_state(  # a random initialisation, or config.init_from's
        config, objective, total_steps,
        functools.partial(create_state, config, objective, mesh, total_steps),
        parallel.replicated(mesh), say), None


def fit_data_statistics(config, objective, state, mesh, say=print):
    """`state` after the objective's one pass over the training split, for objectives that
    need statistics of the data before step 1 (`needs_data_statistics`, e.g. the colour
    prior of the classification family); `state` itself for the others. The pass reads a
    fresh iterator (the training one is untouched) over `classification.prior_images`
    images (0 = all) of the training split, with the training augmentation."""
    if not objective.needs_data_statistics:
        return state
    n = data.num_examples(config.data, config.data.train_split)
    cap = int(objective.prior_images or 0)
    n = min(n, cap) if cap else n
    steps = max(1, int(math.ceil(n / config.batch_size)))
    it = data.create_train_iterator(config.data, global_batch_size=config.batch_size,
                                    seed=config.seed + 1)
    bar = tqdm(total=steps * config.batch_size, desc="colour prior", unit="img",
               disable=jax.process_index() != 0, dynamic_ncols=True, mininterval=1.0)

    def batches():
        for _ in range(steps):
            yield parallel.shard_batch(next(it), mesh)

    state, images = objective.fit_data_statistics(state, batches(), progress=bar.update)
    bar.close()
    say(f"colour prior counted over {images} training images")
    return state


STOP_VOTE = "stop_vote"  # batch key: this process's stop request, one entry per row


def make_train_step(objective, mesh):
    """The jitted step: rng derived from the step count, so a resumed run replays exactly.

    A batch may carry `STOP_VOTE` rows (1 where a process was asked to stop); the step
    returns their maximum as the replicated metric `stop_requested`, so every process
    learns of a SIGTERM that reached any of them from the same step, with no collective of
    its own. The objective never sees the votes.

    The objective's `step_constants` (frozen weights such as the perceptual term's VGG16)
    are placed on the mesh once and passed to every call as an argument, not compiled in.
    """
    def step(state, batch, base_rng, constants):
        batch = dict(batch)
        votes = batch.pop(STOP_VOTE, None)
        rng = jax.random.fold_in(base_rng, state.step)
        if constants is None:
            state, metrics = objective.train_step(state, batch, rng)
        else:
            state, metrics = objective.train_step(state, batch, rng, constants=constants)
        if votes is not None:
            metrics = {**metrics, "stop_requested": jnp.max(votes)}
        return state, metrics

    repl, sharded = parallel.replicated(mesh), parallel.data_sharded(mesh)
    jitted = jax.jit(step, in_shardings=(repl, sharded, repl, repl),
                     out_shardings=(repl, repl), donate_argnums=0)
    # Placed as a resume places frozen weights (`load_frozen_like`); None stays None.
    return _StepWithConstants(jitted, jax.device_put(objective.step_constants(), repl))


class _StepWithConstants:
    """`step(state, batch, base_rng)`: the jitted step with its constants as the last
    argument (`lower` likewise, to inspect the compiled program)."""

    def __init__(self, jitted, constants):
        self.jitted, self.constants = jitted, constants

    def __call__(self, state, batch, base_rng):
        return self.jitted(state, batch, base_rng, self.constants)

    def lower(self, state, batch, base_rng):
        return self.jitted.lower(state, batch, base_rng, self.constants)


class _StopFlag:
    """Set by SIGTERM/SIGINT: the loop checkpoints and exits cleanly at the next step."""

    def __init__(self):
        self.raised = False
        self._previous = {}

    def __enter__(self):
        for sig in (signal.SIGTERM, signal.SIGINT):
            try:
                self._previous[sig] = signal.signal(sig, self._handle)
            except ValueError:  # not the main thread (e.g. called from a test runner thread)
                pass
        return self

    def _handle(self, signum, frame):
        del frame
        print(f"received signal {signum}: saving a checkpoint and stopping", flush=True)
        self.raised = True

    def __exit__(self, *exc):
        for sig, handler in self._previous.items():
            signal.signal(sig, handler)


def train_and_evaluate(config, workdir: str):
    """Train `config` in `workdir`, resuming from its latest checkpoint. Returns the state."""
    validate_config(config)
    warm_start.check(config)  # config.init_from names a sound export of this model
    mesh = parallel.create_mesh()
    total_steps = num_train_steps(config)
    objective = make_objective(config)
    train_iter = data.create_train_iterator(
        config.data, global_batch_size=config.batch_size, seed=config.seed,
        with_hints=uses_hints(config))
    say = _printer()
    ckpt = TrainCheckpointer(os.path.join(workdir, "checkpoints"), config.keep_checkpoints)
    # The newest checkpoint that verifies (sha256) and restores; damaged ones are set aside.
    start, state, data_state = resume_or_create_state(config, objective, mesh, total_steps,
                                                      ckpt, say)
    if start:
        train_iter.set_state(data_state)
        say(f"resumed from step {start} in {workdir}")
    else:  # a resumed state already holds the statistics
        state = fit_data_statistics(config, objective, state, mesh, say)

    train_step = make_train_step(objective, mesh)
    train_rng = jax.random.fold_in(jax.random.key(config.seed), 1)
    writer = MetricWriter(workdir, config)  # writes on process 0 only
    evaluator = Evaluator(config, objective, mesh)

    def save(step):
        ckpt.save(step, state, train_iter.get_state(), config)

    def check_finite(step, step_metrics):
        if not bool(jax.device_get(step_metrics["finite"])):
            good = ckpt.newest_verified_step()
            where = (f"The newest checkpoint that verifies is step {good} in {ckpt.directory}"
                     if good is not None else f"No checkpoint in {ckpt.directory} verifies")
            raise NonFiniteLossError(
                f"loss, gradients or parameters (EMA included) became NaN/Inf at step "
                f"{step}; stopping. {where}.")

    evaluated = {}  # step -> (eval metrics, sample grid) of this session's evaluations

    def evaluate(step):
        results = evaluator.evaluate(state)
        writer.write(step, results, prefix="eval")
        try:  # a model without a score fails the run, its table (nan) written first
            require_finite_metrics({config.model.name: results}, f"at step {step}")
        except NonFiniteMetricsError:
            md, _ = write_report({config.model.name: results,
                                  "gray baseline (ab = 0)": evaluator.gray_baseline()},
                                 os.path.join(workdir, "eval"), f"{config.eval.split}_step_{step}")
            require_finite_metrics({config.model.name: results}, f"at step {step}", md)
        grid = evaluator.sample_grid(state, os.path.join(workdir, "samples", f"step_{step}.png"))
        evaluated[step] = (results, grid)
        return results

    # Every process runs every line below in the same order: each evaluation, gather and
    # checkpoint is a collective. Only the writer, the progress bar and `say` are process 0's.
    pending, previous, stopping = [], None, False
    t0, images = time.time(), 0
    bar = progress.bar(total_steps, "train", "step", initial=start,
                       enabled=jax.process_index() == 0)
    # On any error too: the pending save is finished, and the TensorBoard writer closed
    # before interpreter shutdown (where its thread can no longer start).
    try:
        with _StopFlag() as stop:
            if start < total_steps:
                writer.write(start, evaluator.gray_baseline(), prefix="eval_gray_baseline")
                bar.set_postfix_str("compiling the training step")
            for step in range(start + 1, total_steps + 1):
                local = next(train_iter)
                local[STOP_VOTE] = np.full(len(local["l"]), float(stop.raised), np.float32)
                batch = parallel.shard_batch(local, mesh)
                state, step_metrics = train_step(state, batch, train_rng)
                if previous is not None:  # check step-1 while step runs: no pipeline stall
                    check_finite(*previous)
                    # The vote is a replicated output: all processes stop after the same step.
                    stopping = bool(jax.device_get(previous[1]["stop_requested"]))
                previous = (step, step_metrics)
                pending.append(step_metrics)
                images += config.batch_size
                bar.update(1)
                if step == start + 1:  # compiled: time left from the steps' own speed
                    progress.restart_clock(bar, postfix="")

                last = step == total_steps
                if step % config.log_every == 0 or last or stopping:
                    check_finite(step, step_metrics)
                    fetched = jax.device_get(pending)
                    means = {k: float(np.mean([m[k] for m in fetched]))
                             for k in fetched[0] if k not in ("finite", "stop_requested")}
                    elapsed = time.time() - t0
                    means["images_per_sec"] = images / max(elapsed, 1e-9)
                    writer.write(step, means, echo=False)
                    bar.set_postfix(loss=f"{means['loss']:.4g}",
                                    img_s=f"{means['images_per_sec']:.1f}")
                    pending, t0, images = [], time.time(), 0
                if step % config.checkpoint_every == 0 or last or stopping:
                    check_finite(step, step_metrics)
                    save(step)
                if step % config.eval_every == 0 or last:
                    evaluate(step)
                if stopping:
                    break
        bar.close()  # the final bar, once, above what follows
        ckpt.close()  # waits for the last save
        if start >= total_steps:
            say(f"nothing to do: {workdir} is already at step {start} of {total_steps}")
            for line in run_summary.next_lines(workdir, start):
                say(line)
        elif stopping:  # preempted: exit promptly; rerunning the command resumes
            say(f"stopped at step {int(jax.device_get(state.step))}; checkpoint saved; "
                "the same command resumes")
        else:
            final = int(jax.device_get(state.step))
            # The last step's evaluation (the same state, the same numbers) and grid.
            results, grid = evaluated.get(final) or (evaluator.evaluate(state), None)
            gray = evaluator.gray_baseline()
            rows = {config.model.name: results, "gray baseline (ab = 0)": gray}
            md, _ = write_report(rows, os.path.join(workdir, "eval"),
                                 f"{config.eval.split}_step_{final}")
            say(open(md).read() if md else "")
            require_finite_metrics(rows, f"at step {final}", md)
            for line in run_summary.training_lines(
                    workdir, final, ckpt.step_dir(final), md, grid,
                    f"on {config.eval.split} ({int(gray.get('num_examples', 0))} images): "
                    f"{versus_gray_words(results, gray)}"):
                say(line)
    finally:
        bar.close()
        ckpt.close()
        writer.close()
    return state


def _printer():
    """`print` on process 0 (flushed), a no-op elsewhere: one copy of every message."""
    if jax.process_index() != 0:
        return lambda *args, **kwargs: None
    return progress.say  # on its own line, above the progress bar


def evaluate_checkpoint(config, workdir: str, overridden: list[str] | None = None) -> dict:
    """`--mode=eval`: metrics table (markdown + JSON) and sample grid for a checkpoint.

    With `overridden` (the `--config.<field>` flags given), the run's saved config is used
    with those runtime fields applied (`run_config.merge`); with None, `config` as it is.
    The state is restored by `checkpoint.restore_run`, replicated on the mesh.
    """
    mesh = parallel.create_mesh()
    config, objective, state, step = restore_run(
        workdir, config.eval.step, config=config, overridden=overridden,
        sharding=parallel.replicated(mesh),
        prepare_config=functools.partial(validate_config, training=False), action="evaluate")
    evaluator = Evaluator(config, objective, mesh)
    split = config.eval.split
    rows = {config.model.name: evaluator.evaluate(state, split),
            "gray baseline (ab = 0)": evaluator.gray_baseline(split)}
    out = os.path.join(workdir, "eval")
    md, js = write_report(rows, out, f"{split}_step_{step}")
    # A model without a score: its table (nan, never 0) is written, and the evaluation fails.
    require_finite_metrics(rows, f"on {split} at step {step}", md)
    grid = evaluator.sample_grid(state, os.path.join(out, f"{split}_step_{step}.png"), split)
    say = _printer()
    say(open(md).read() if md else "")
    say(f"wrote {md}, {js} and the sample grid {grid}")
    gray = rows["gray baseline (ab = 0)"]
    say(f"against gray (ab = 0) on {split} ({int(gray.get('num_examples', 0))} images): "
        f"{versus_gray_words(rows[config.model.name], gray)}")
    return rows
