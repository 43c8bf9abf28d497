"""The one training loop of every task: single process or DDP (``torchrun``, gloo on CPU).

A task (:class:`Task`) says what is task-specific: how to build its model, what the training
batches are, the loss of a batch, the validation score (higher is better), its checkpoint format
and when a checkpoint may be resumed. The loop does the rest, the same for every task: Adam,
gradient clipping, ``ReduceLROnPlateau`` on the validation score, checkpoints ``last.pt`` (with the
optimizer, schedule and random state: resumable) and ``best.pt`` (the best validation score),
resume, seeds, a wall-clock budget, a progress bar with the loss and the time left, and a CSV log
``step, epoch, loss, <score>, elapsed_s, lr`` (plus TensorBoard when the ``tensorboard`` package is
installed). Under DDP, rank 0 validates, logs and saves; every process follows its score.

:func:`soi.train.train` (speech) and :func:`soi.tasks.scenes.train.train_scenes` are thin tasks over
:func:`run_training`.
"""

from __future__ import annotations

import csv
import math
import os
import random
import time
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from .files import check_output_folder
from .progress import progress_bar

__all__ = [
    "LOOP",
    "RUN_FILES",
    "LoopChecks",
    "LoopConfig",
    "Score",
    "Task",
    "check_fields",
    "dist_env",
    "run_training",
    "seed_everything",
]

RUN_FILES = ("last.pt", "best.pt", "log.csv")
"""What a run writes in its folder: the latest state (resumable), the best checkpoint, the log."""


@dataclass(frozen=True)
class LoopConfig:
    """The task-independent settings of a run (a task's own config carries them and passes them on).

    ``max_steps`` (None: ``epochs`` epochs) and ``minutes`` (None: no budget; the wall-clock time of the
    whole run, a resumed one counting what it trained before) bound the run;
    ``lr_patience`` validations without a new best halve the learning rate, down to ``min_lr``
    (None: a constant rate).
    """

    out_dir: str
    batch_size: int
    lr: float
    lr_patience: int | None
    min_lr: float
    epochs: int
    max_steps: int | None
    minutes: float | None
    seed: int
    valid_every: int
    grad_clip: float
    num_workers: int
    resume: bool
    progress: bool


@dataclass(frozen=True)
class LoopChecks:
    """:class:`LoopConfig`'s fields by kind, for :func:`check_fields`: ``integers`` as ``(name, lowest
    value, None allowed)``, ``positive`` (finite, > 0) as ``(name, None allowed)``, ``booleans``."""

    integers: tuple[tuple[str, int, bool], ...] = (
        ("batch_size", 1, False), ("epochs", 1, False), ("max_steps", 1, True), ("valid_every", 1, False),
        ("num_workers", 0, False), ("seed", 0, False), ("lr_patience", 1, True),
    )  # fmt: skip
    positive: tuple[tuple[str, bool], ...] = (("lr", False), ("min_lr", False), ("minutes", True), ("grad_clip", False))
    booleans: tuple[str, ...] = ("resume", "progress")


LOOP = LoopChecks()


def check_fields(
    config: object,
    *,
    strings: tuple[str, ...] = (),
    integers: tuple[tuple[str, int, bool], ...] = (),
    positive: tuple[tuple[str, bool], ...] = (),
    fractions: tuple[str, ...] = (),
    booleans: tuple[str, ...] = (),
) -> None:
    """Check a config's fields by kind, in this order, and raise ``ValueError`` naming the first bad one.

    A config read from JSON reaches its ``__post_init__`` unchecked, so a wrong type or value is named
    before any work: ``strings`` non-empty strings, ``integers`` ``(name, low, optional)`` integers
    ``>= low`` (``None`` allowed when optional; ``bool`` is not an integer here), ``positive``
    ``(name, optional)`` finite numbers ``> 0``, ``fractions`` numbers in ``[0, 1)`` (dropout),
    ``booleans`` ``True`` or ``False``.
    """
    kind = type(config).__name__
    for name in strings:
        v = getattr(config, name)
        if not isinstance(v, str) or not v.strip():
            raise ValueError(f"{kind}.{name} must be a non-empty string, got {v!r}")
    for name, low, optional in integers:
        v = getattr(config, name)
        if not (optional and v is None) and (not isinstance(v, int) or isinstance(v, bool) or v < low):
            raise ValueError(f"{kind}.{name} must be an integer >= {low}, got {v!r}")
    for name, optional in positive:
        v = getattr(config, name)
        if not (optional and v is None) and (isinstance(v, bool) or not isinstance(v, (int, float)) or not math.isfinite(v) or v <= 0):
            raise ValueError(f"{kind}.{name} must be a finite number > 0, got {v!r}")
    for name in fractions:
        v = getattr(config, name)
        if isinstance(v, bool) or not isinstance(v, (int, float)) or not 0.0 <= v < 1.0:
            raise ValueError(f"{kind}.{name} must be a number in [0, 1), got {v!r}")
    for name in booleans:
        v = getattr(config, name)
        if not isinstance(v, bool):
            raise ValueError(f"{kind}.{name} must be true or false, got {v!r}")  # noqa: TRY004 (a bad config value, as the others)


@dataclass(frozen=True)
class Score:
    """How a task's validation score is named: ``key`` in the log, the checkpoints' ``extra`` and
    the summary (``best_<key>``); ``label`` and ``unit`` in messages (``best valid SI-SNRi 1.20 dB``)."""

    key: str
    label: str
    unit: str


class Task(Protocol):
    """What :func:`run_training` needs to know about a task."""

    score: Score
    name: str
    """Shown on the progress bar (``train <name>``)."""

    def config_dict(self) -> dict[str, Any]:
        """The run's whole configuration as JSON values, saved in every checkpoint as ``train_config``."""

    def build_model(self) -> nn.Module:
        """A fresh model (called before the run's seed is set, as the model's own seeding wants)."""

    def read_checkpoint(self, path: Path) -> dict[str, Any]:
        """A checkpoint's payload, format checked; it has ``state_dict`` and ``extra``."""

    def check_resumable(self, path: Path, payload: dict[str, Any], model: nn.Module) -> None:
        """Raise ``ValueError`` if ``payload`` (the run's ``last.pt``) holds another model than ``model``."""

    def fresh_start(self, model: nn.Module, rank: int) -> None:
        """A run that does not resume begins here (weights from another checkpoint, for one)."""

    def open_data(self) -> None:
        """Open the training and validation data (before the seed is set; errors before any work)."""

    def train_data(self, model: nn.Module) -> Dataset:
        """The training examples; the loop sets their ``epoch`` attribute before every epoch."""

    def loss(self, model: nn.Module, batch: Any) -> Tensor:
        """The scalar loss of one batch; ``model`` may be wrapped in DDP (call it, do not unwrap it)."""

    def validate(self, model: nn.Module) -> float:
        """The validation score of ``model`` (higher is better), on rank 0 only."""

    def save_checkpoint(self, path: Path, model: nn.Module, extra: dict[str, Any]) -> None:
        """Write a self-describing checkpoint with ``extra`` (replacing ``path``)."""


def dist_env() -> tuple[int, int]:
    """``(rank, world size)``, the process group initialised (gloo) when ``torchrun`` started several."""
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("gloo")
    return (dist.get_rank() if world > 1 else 0), world


def seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


def _batches(loader: DataLoader, data: Dataset, sampler: DistributedSampler | None, start_epoch: int) -> Iterator[tuple[int, Any]]:
    epoch = start_epoch
    while True:
        data.epoch = epoch
        if sampler is not None:
            sampler.set_epoch(epoch)
        for batch in loader:
            yield epoch, batch
        epoch += 1


def run_training(task: Task, loop: LoopConfig, force: bool = False) -> dict[str, Any]:
    """Train ``task``'s model under ``loop``; returns a summary (``steps``, ``best_<score>``,
    ``last``, ``best``, ``loss``: the last three on rank 0 only).

    A run folder that holds ``last.pt`` is resumed (unless ``loop.resume`` is false), with the same
    model only (:meth:`Task.check_resumable`). Files of an earlier run that this run would replace
    without resuming from them (:data:`RUN_FILES`) are replaced only with ``force``. The folder is
    checked writable first.

    Raises:
        FileExistsError: the folder holds an earlier run's files and ``force`` is false.
        ValueError: resuming a run of another model; a bad config, data set or checkpoint.
    """
    score = task.score
    rank, world = dist_env()
    if world > 1:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
    out = Path(loop.out_dir)
    check_output_folder(out)  # every process: the same answer, before any work
    last_path, best_path = out / "last.pt", out / "best.pt"
    module = task.build_model()
    payload = task.read_checkpoint(last_path) if loop.resume and last_path.is_file() else None
    if payload is not None:
        task.check_resumable(last_path, payload, module)
    else:
        task.fresh_start(module, rank)
        earlier = [name for name in RUN_FILES if (out / name).exists()]
        if earlier and not force:
            raise FileExistsError(
                f"{out} already holds {', '.join(earlier)} of an earlier run; resume it (without --no-resume), "
                "choose a new --out folder, or pass --force to replace them"
            )
    task.open_data()
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
    seed_everything(loop.seed)
    optimizer = torch.optim.Adam(module.parameters(), lr=loop.lr)
    # The learning rate halves after lr_patience validations without a new best (None: constant).
    scheduler = (
        torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, "max", factor=0.5, patience=loop.lr_patience, min_lr=loop.min_lr)
        if loop.lr_patience is not None
        else None
    )
    step, start_epoch, best = 0, 0, -math.inf
    elapsed_before = 0.0

    if payload is not None:
        module.load_state_dict(payload["state_dict"])
        progress = payload["extra"]["progress"]
        optimizer.load_state_dict(progress["optimizer"])
        if scheduler is not None and progress.get("scheduler") is not None:  # runs from before the schedule start it fresh
            scheduler.load_state_dict(progress["scheduler"])
        step, start_epoch, best = progress["step"], progress["epoch"], progress["best"]
        elapsed_before = progress["elapsed"]
        torch.set_rng_state(progress["torch_rng"])
        if rank == 0:
            print(f"resumed from {last_path} at step {step} (epoch {start_epoch}, best {score.label} {best:.2f} {score.unit})")

    model: nn.Module = module
    if world > 1:
        model = nn.parallel.DistributedDataParallel(module)
    data = task.train_data(module)
    sampler = DistributedSampler(data, world, rank, shuffle=True, seed=loop.seed) if world > 1 else None
    loader = DataLoader(
        data,
        batch_size=loop.batch_size,
        shuffle=sampler is None,
        sampler=sampler,
        num_workers=loop.num_workers,
        drop_last=len(data) >= loop.batch_size * world,
        generator=torch.Generator().manual_seed(loop.seed + start_epoch) if sampler is None else None,
    )
    steps_per_epoch = max(1, len(loader))
    total_steps = loop.max_steps if loop.max_steps is not None else loop.epochs * steps_per_epoch
    budget = loop.minutes * 60 if loop.minutes is not None else math.inf

    log_path = out / "log.csv"
    writer = None
    if rank == 0:
        new_log = not log_path.is_file() or step == 0
        log_file = log_path.open("w" if new_log else "a", newline="")
        log = csv.writer(log_file)
        if new_log:
            log.writerow(["step", "epoch", "loss", score.key, "elapsed_s", "lr"])
        try:
            from torch.utils.tensorboard import SummaryWriter

            writer = SummaryWriter(str(out / "tensorboard"))
        except ImportError:
            writer = None
    bar = None
    if rank == 0:
        # Under a time budget the step count is not the limit: count steps, show the time left.
        bar_total = total_steps if math.isinf(budget) else None
        bar = progress_bar(bar_total, desc=f"train {task.name}", unit="step", enabled=loop.progress, initial=step)

    def checkpoint(path: Path, epoch: int, valid: float | None) -> None:
        extra = {
            "train_config": task.config_dict(),
            "step": step,
            score.key: valid,
            "progress": {
                "optimizer": optimizer.state_dict(),
                "scheduler": scheduler.state_dict() if scheduler is not None else None,
                "step": step,
                "epoch": epoch,
                "best": best,
                "elapsed": elapsed_before + (time.monotonic() - t0),
                "torch_rng": torch.get_rng_state(),
            },
        }
        task.save_checkpoint(path, module, extra if path == last_path else {k: v for k, v in extra.items() if k != "progress"})

    def validate_and_save(epoch: int) -> None:
        """Every process: rank 0 validates and saves, the others take its score, so that every
        process's learning rate follows the same schedule."""
        nonlocal best
        valid = task.validate(module) if rank == 0 else 0.0
        if world > 1:
            shared = torch.tensor([valid])
            dist.broadcast(shared, 0)
            valid = float(shared)
        if scheduler is not None:
            scheduler.step(valid)  # before the checkpoint: a resumed run continues the same schedule
        if rank != 0:
            return
        if valid > best:
            best = valid
            checkpoint(best_path, epoch, valid)
        checkpoint(last_path, epoch, valid)
        lr = optimizer.param_groups[0]["lr"]
        log.writerow([step, epoch, f"{running:.4f}", f"{valid:.4f}", f"{elapsed_before + time.monotonic() - t0:.1f}", f"{lr:.3g}"])
        log_file.flush()
        if writer is not None:
            writer.add_scalar(f"valid/{score.key.removeprefix('valid_')}", valid, step)

    t0 = time.monotonic()
    running = float("nan")
    epoch = start_epoch
    module.train()
    batches = _batches(loader, data, sampler, start_epoch)
    unit = score.unit.replace(" ", "")
    while step < total_steps:
        epoch, batch = next(batches)
        loss = task.loss(model, batch)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(module.parameters(), loop.grad_clip)
        optimizer.step()
        step += 1
        value = float(loss.detach())
        running = value if math.isnan(running) else 0.95 * running + 0.05 * value
        stop = torch.tensor([float(elapsed_before + time.monotonic() - t0 >= budget)])
        if world > 1:
            dist.all_reduce(stop)  # every process stops at the same step
        if rank == 0:
            if bar is not None:
                postfix = {"loss": f"{running:.2f}", "epoch": epoch, "best": f"{best:.2f}{unit}" if best > -math.inf else "-"}
                if not math.isinf(budget):
                    left = max(0.0, budget - (elapsed_before + time.monotonic() - t0))
                    postfix["left"] = f"{int(left // 60)}:{int(left % 60):02d}"
                bar.set_postfix(postfix)
                bar.update(1)
            if writer is not None:
                writer.add_scalar("train/loss", value, step)
        if step % loop.valid_every == 0:
            validate_and_save(epoch)
        if stop.item() > 0:
            break
    summary: dict[str, Any] = {"steps": step}
    if step % loop.valid_every != 0 or step == 0:
        validate_and_save(epoch)
    if rank == 0:
        if bar is not None:
            bar.close()
        log_file.close()
        if writer is not None:
            writer.close()
        summary.update({f"best_{score.key}": best, "last": str(last_path), "best": str(best_path), "loss": running})
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return summary
