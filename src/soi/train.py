"""Training the speech-separation U-Net: one loop, single process or DDP (``torchrun``, gloo on CPU).

A compressed spectral loss (default; scale-aware, so the output keeps the speech's level) or the
negative SI-SNR on the offline path (which *is* the streaming path run over the whole sequence), a
bounded mask (default), weights from another checkpoint (``init_from``: fine-tuning into an SOI
pattern), Adam, checkpoints ``last.pt`` and ``best.pt`` (best validation SI-SNRi), resume, seeds, a
wall-clock budget, a progress bar with loss and ETA, and a CSV log (plus TensorBoard when the
``tensorboard`` package is installed).

    soi train --data data/default --out runs/stmc --pattern STMC --minutes 10
    torchrun --nproc_per_node 2 -m soi train --data ... --out ...
"""

from __future__ import annotations

import csv
import dataclasses
import json
import math
import os
import random
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator

import numpy as np
import torch
import torch.distributed as dist
from torch import Tensor
from torch.utils.data import DataLoader, Dataset, DistributedSampler

from .files import check_output_folder
from .models.unet import UNetConfig, parse_pattern
from .progress import progress_bar
from .tasks.speech.data import noisy_clean, open_split
from .tasks.speech.masker import MASK_BOUNDS, SpectralMasker, SpeechEnhancer, read_checkpoint, save_checkpoint, unet_config_of
from .tasks.speech.metrics import LOSSES, si_snr_improvement, training_loss

__all__ = ["TrainConfig", "train", "evaluate_si_snri", "init_weights"]

ASSETS = Path(__file__).parent / "assets"


@dataclass(frozen=True)
class TrainConfig:
    """Everything a training run depends on; saved in every checkpoint.

    ``data`` is a folder with ``train/`` and ``valid/`` splits, each with ``noisy/`` and ``clean/``
    WAVs of the same names (the layout :func:`soi.tasks.speech.generate.generate_dataset` writes and the
    DNS Challenge's synthetic pairs use).
    """

    data: str
    out_dir: str = "runs/speech"
    model_config: str = str(ASSETS / "unet_small.json")
    pattern: str = "STMC"
    upsampler: str = "duplicate"
    mask_bound: str = "tanh"
    loss: str = "compressed-spectral"
    init_from: str | None = None
    remix: float = 0.0
    batch_size: int = 8
    segment_seconds: float = 2.0
    lr: float = 1e-3
    lr_patience: int | None = 4
    min_lr: float = 1e-5
    epochs: int = 100
    max_steps: int | None = None
    minutes: float | None = None
    seed: int = 0
    valid_every: int = 200
    grad_clip: float = 5.0
    num_workers: int = 0
    resume: bool = True
    progress: bool = True

    def __post_init__(self) -> None:
        # A JSON config reaches here unchecked: a wrong type or value is named before any work.
        for name in ("data", "out_dir", "model_config", "pattern", "upsampler"):
            if not isinstance(getattr(self, name), str) or not getattr(self, name).strip():
                raise ValueError(f"TrainConfig.{name} must be a non-empty string, got {getattr(self, name)!r}")
        for name, low, optional in (
            ("batch_size", 1, False), ("epochs", 1, False), ("max_steps", 1, True), ("valid_every", 1, False),
            ("num_workers", 0, False), ("seed", 0, False), ("lr_patience", 1, True),
        ):  # fmt: skip
            v = getattr(self, name)
            if not (optional and v is None) and (not isinstance(v, int) or isinstance(v, bool) or v < low):
                raise ValueError(f"TrainConfig.{name} must be an integer >= {low}, got {v!r}")
        for name, optional in (("segment_seconds", False), ("lr", False), ("min_lr", False), ("minutes", True), ("grad_clip", False)):
            v = getattr(self, name)
            if not (optional and v is None) and (
                not isinstance(v, (int, float)) or isinstance(v, bool) or not math.isfinite(v) or v <= 0
            ):
                raise ValueError(f"TrainConfig.{name} must be a finite number > 0, got {v!r}")
        if self.mask_bound not in MASK_BOUNDS:
            raise ValueError(f"TrainConfig.mask_bound must be one of {', '.join(MASK_BOUNDS)}, got {self.mask_bound!r}")
        if self.loss not in LOSSES:
            raise ValueError(f"TrainConfig.loss must be one of {', '.join(LOSSES)}, got {self.loss!r}")
        if isinstance(self.remix, bool) or not isinstance(self.remix, (int, float)) or not 0.0 <= self.remix <= 1.0:
            raise ValueError(f"TrainConfig.remix is the share of remixed training crops, a number in [0, 1], got {self.remix!r}")
        if self.init_from is not None and (not isinstance(self.init_from, str) or not self.init_from.strip()):
            raise ValueError(f"TrainConfig.init_from must be a checkpoint path or null, got {self.init_from!r}")
        for name in ("resume", "progress"):
            if not isinstance(getattr(self, name), bool):
                raise ValueError(f"TrainConfig.{name} must be true or false, got {getattr(self, name)!r}")

    @classmethod
    def from_json(cls, path: str | Path, **overrides: Any) -> TrainConfig:
        """The config in the JSON file ``path``, with ``overrides`` (those not None) on top."""
        try:
            raw = json.loads(Path(path).read_text())
        except json.JSONDecodeError as err:
            raise ValueError(f"{path}: not valid JSON ({err})") from None
        if not isinstance(raw, dict):
            raise ValueError(f"{path}: expected a JSON object of training options, got {type(raw).__name__}")
        unknown = set(raw) - {f.name for f in dataclasses.fields(cls)}
        if unknown:
            raise ValueError(f"{path}: unknown training options {sorted(unknown)}")
        raw.update({k: v for k, v in overrides.items() if v is not None})
        if "data" not in raw:
            # A config file describes a run completely (it is saved in every checkpoint); a data
            # set picked behind its back would make the run impossible to repeat from it.
            raise ValueError(f'{path}: no "data" (the data set folder with train/ and valid/); add it to the file or pass --data DIR')
        return cls(**raw)


# -- data -------------------------------------------------------------------------------------------


class RandomCrops(Dataset):
    """Random fixed-length crops of (noisy, clean) pairs, reproducible from (seed, epoch, index).

    ``remix`` is the share of the crops that are remixed (dynamic mixing): the clean speech of
    this pair with the noise (``noisy - clean``) of another pair drawn at random, at an SNR drawn
    uniformly from ``snr_range_db``. A fixed set of mixtures is learnt by heart within a few
    epochs; remixing makes every epoch's mixtures new from the same speech and noise, so that no
    recording outside the training split is needed.
    """

    def __init__(
        self, base: Dataset, samples: int, seed: int, remix: float = 0.0, snr_range_db: tuple[float, float] = (-5.0, 15.0)
    ) -> None:  # fmt: skip
        if not 0.0 <= remix <= 1.0:
            raise ValueError(f"RandomCrops: remix is a share of the crops in [0, 1], got {remix!r}")
        self.base, self.samples, self.seed, self.epoch = base, samples, seed, 0
        self.remix, self.snr_range_db = remix, snr_range_db

    def __len__(self) -> int:
        return len(self.base)

    def _crop(self, index: int, rng: random.Random) -> tuple[Tensor, Tensor]:
        noisy, clean = noisy_clean(self.base[index])
        n = noisy.shape[-1]
        if n < self.samples:
            pad = (0, self.samples - n)
            return torch.nn.functional.pad(noisy, pad), torch.nn.functional.pad(clean, pad)
        start = rng.randint(0, n - self.samples)
        return noisy[start : start + self.samples], clean[start : start + self.samples]

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        rng = random.Random(hash((self.seed, self.epoch, index)))
        noisy, clean = self._crop(index, rng)
        if self.remix == 0.0 or rng.random() >= self.remix:
            return noisy, clean
        other_noisy, other_clean = self._crop(rng.randrange(len(self.base)), rng)
        noise = other_noisy - other_clean
        speech_rms, noise_rms = clean.square().mean().sqrt(), noise.square().mean().sqrt()
        if speech_rms < 1e-6 or noise_rms < 1e-6:  # a pause or a silent noise has no SNR to set
            return clean + noise, clean
        snr_db = rng.uniform(*self.snr_range_db)
        return clean + noise * (speech_rms / noise_rms * 10 ** (-snr_db / 20)), clean


# -- distributed helpers ----------------------------------------------------------------------------


def _dist_env() -> tuple[int, int]:
    world = int(os.environ.get("WORLD_SIZE", "1"))
    if world > 1 and not dist.is_initialized():
        dist.init_process_group("gloo")
    return (dist.get_rank() if world > 1 else 0), world


def _seed_everything(seed: int) -> None:
    random.seed(seed)
    np.random.seed(seed % 2**32)
    torch.manual_seed(seed)


# -- evaluation -------------------------------------------------------------------------------------


@torch.no_grad()
def evaluate_si_snri(enhancer: SpeechEnhancer, dataset: Dataset, batch_size: int = 4) -> float:
    """Mean SI-SNR improvement (dB) of the offline path over a data set of (noisy, clean) pairs."""
    was_training = enhancer.training
    enhancer.eval()
    total, count = 0.0, 0
    for i in range(0, len(dataset), batch_size):
        items = [noisy_clean(dataset[j]) for j in range(i, min(i + batch_size, len(dataset)))]
        for noisy, clean in items:  # items may differ in length: one at a time, no padding bias
            est = enhancer(noisy.unsqueeze(0))
            total += float(si_snr_improvement(est, noisy.unsqueeze(0), clean.unsqueeze(0)).sum())
            count += 1
    enhancer.train(was_training)
    return total / max(count, 1)


# -- the loop ---------------------------------------------------------------------------------------


def build_enhancer(cfg: TrainConfig) -> SpeechEnhancer:
    unet_config = UNetConfig.from_json(cfg.model_config)
    masker = SpectralMasker(unet_config, cfg.pattern, mask_bound=cfg.mask_bound, upsampler=cfg.upsampler)
    # The U-Net's frequency bins fix the STFT: F = n_fft/2 + 1, with the paper's 75 % overlap.
    n_fft = 2 * (unet_config.freq_bins - 1)
    return SpeechEnhancer(masker, n_fft=n_fft, hop=n_fft // 4)


def _batches(loader: DataLoader, crops: RandomCrops, sampler: DistributedSampler | None, start_epoch: int) -> Iterator[tuple[int, Tensor, Tensor]]:
    epoch = start_epoch
    while True:
        crops.epoch = epoch
        if sampler is not None:
            sampler.set_epoch(epoch)
        for noisy, clean in loader:
            yield epoch, noisy, clean
        epoch += 1


RUN_FILES = ("last.pt", "best.pt", "log.csv")
"""What a run writes in its folder: the latest state (resumable), the best checkpoint, the log."""


def _check_resumable(path: Path, payload: dict[str, Any], cfg: TrainConfig, enhancer: SpeechEnhancer) -> None:
    """Refuse to continue a run with another model: its weights and optimizer would be mixed with
    a model they do not belong to, and its best.pt replaced by a model of another kind."""
    if "progress" not in payload.get("extra", {}):
        raise ValueError(f"{path} holds no training progress (a best.pt copied there?); resume needs the run's own last.pt")
    before = unet_config_of(payload)
    now = enhancer.masker.config
    changes = [
        f"{f.name} {getattr(before, f.name)} -> {getattr(now, f.name)}"
        for f in dataclasses.fields(UNetConfig)
        if getattr(before, f.name) != getattr(now, f.name)
    ]
    if parse_pattern(payload["pattern"]).text != parse_pattern(cfg.pattern).text:
        changes.append(f"pattern {payload['pattern']!r} -> {cfg.pattern!r}")
    trained_upsampler = payload["unet_kwargs"].get("upsampler", "duplicate")
    if trained_upsampler != cfg.upsampler:
        changes.append(f"upsampler {trained_upsampler!r} -> {cfg.upsampler!r}")
    bound = payload.get("mask_bound", "none")
    if bound != cfg.mask_bound:
        changes.append(f"mask_bound {bound!r} -> {cfg.mask_bound!r}")
    if changes:
        before_cfg = payload["extra"].get("train_config", {})
        raise ValueError(
            f"{path} was trained with another model than this run asks for ({'; '.join(changes)}); resume it with its own "
            f"--model-config {before_cfg.get('model_config', '?')!r} --pattern {payload['pattern']!r} --upsampler "
            f"{trained_upsampler!r} --mask-bound {bound!r}, or start this run in a new --out folder"
        )


def init_weights(enhancer: SpeechEnhancer, path: str | Path) -> list[str]:
    """Load the weights of the checkpoint ``path`` into ``enhancer`` (fine-tuning: parameter names
    are shared across SOI patterns, so an STMC model starts an S-CC one). Returns the names of the
    parameters the checkpoint does not have (a learned upsampler new to this pattern: they keep
    their initialisation).

    Raises:
        ValueError: another model config or mask bound, weights of another shape, or weights this
            model has no place for; the message names them.
    """
    payload = read_checkpoint(path)
    m = enhancer.masker
    before = unet_config_of(payload)
    if before != m.config:
        raise ValueError(f"--init-from {path}: the checkpoint's U-Net ({before}) is not this run's ({m.config})")
    bound = payload.get("mask_bound", "none")
    if bound != m.mask_bound:
        raise ValueError(f"--init-from {path}: trained with mask_bound {bound!r}, this run uses {m.mask_bound!r}; pass --mask-bound {bound!r}")
    own, found = enhancer.state_dict(), payload["state_dict"]
    shapes = sorted(k for k in set(own) & set(found) if own[k].shape != found[k].shape)
    unused = sorted(set(found) - set(own))
    if shapes or unused:
        raise ValueError(
            f"--init-from {path} (trained as {payload['pattern']!r}) does not fit pattern {m.pattern!r}: "
            f"{len(shapes)} weights of another shape ({', '.join(shapes[:3])}), {len(unused)} with no place here ({', '.join(unused[:3])})"
        )
    missing = sorted(set(own) - set(found))
    enhancer.load_state_dict({**own, **found})
    return missing


def train(cfg: TrainConfig, force: bool = False) -> dict[str, Any]:
    """Train a model; returns a summary (steps, best validation SI-SNRi, checkpoint paths).

    A run folder that holds ``last.pt`` is resumed (unless ``cfg.resume`` is false), with the same
    model only. Files of an earlier run that this run would replace without resuming from them
    (:data:`RUN_FILES`) are replaced only with ``force``. The folder is checked writable first.

    Raises:
        FileExistsError: the folder holds an earlier run's files and ``force`` is false.
        ValueError: resuming a run whose model config, pattern or upsampler differ from ``cfg``;
            a bad config, data set or checkpoint.
    """
    rank, world = _dist_env()
    if world > 1:
        torch.set_num_threads(max(1, (os.cpu_count() or 1) // world))
    out = Path(cfg.out_dir)
    check_output_folder(out)  # every process: the same answer, before any work
    last_path, best_path = out / "last.pt", out / "best.pt"
    enhancer = build_enhancer(cfg)
    payload = read_checkpoint(last_path) if cfg.resume and last_path.is_file() else None
    if payload is not None:
        _check_resumable(last_path, payload, cfg, enhancer)
    elif cfg.init_from is not None:
        fresh = init_weights(enhancer, cfg.init_from)
        if rank == 0:
            print(f"initialised from {cfg.init_from}" + (f"; new here (initialised fresh): {', '.join(fresh)}" if fresh else ""))
    if payload is None:
        earlier = [name for name in RUN_FILES if (out / name).exists()]
        if earlier and not force:
            raise FileExistsError(
                f"{out} already holds {', '.join(earlier)} of an earlier run; resume it (without --no-resume), "
                "choose a new --out folder, or pass --force to replace them"
            )
    train_set = open_split(cfg.data, "train")
    valid_set = open_split(cfg.data, "valid")
    if rank == 0:
        out.mkdir(parents=True, exist_ok=True)
    _seed_everything(cfg.seed)
    optimizer = torch.optim.Adam(enhancer.parameters(), lr=cfg.lr)
    # The learning rate halves after lr_patience validations without a new best (None: constant).
    scheduler = (
        torch.optim.lr_scheduler.ReduceLROnPlateau(optimizer, "max", factor=0.5, patience=cfg.lr_patience, min_lr=cfg.min_lr)
        if cfg.lr_patience is not None
        else None
    )
    step, start_epoch, best = 0, 0, -math.inf
    elapsed_before = 0.0

    if payload is not None:
        enhancer.load_state_dict(payload["state_dict"])
        progress = payload["extra"]["progress"]
        optimizer.load_state_dict(progress["optimizer"])
        if scheduler is not None and "scheduler" in progress:  # runs from before the schedule start it fresh
            scheduler.load_state_dict(progress["scheduler"])
        step, start_epoch, best = progress["step"], progress["epoch"], progress["best"]
        elapsed_before = progress["elapsed"]
        torch.set_rng_state(progress["torch_rng"])
        if rank == 0:
            print(f"resumed from {last_path} at step {step} (epoch {start_epoch}, best valid SI-SNRi {best:.2f} dB)")

    model: torch.nn.Module = enhancer
    if world > 1:
        model = torch.nn.parallel.DistributedDataParallel(enhancer)
    crops = RandomCrops(train_set, int(cfg.segment_seconds * enhancer.sample_rate), cfg.seed, cfg.remix)
    sampler = DistributedSampler(crops, world, rank, shuffle=True, seed=cfg.seed) if world > 1 else None
    loader = DataLoader(
        crops,
        batch_size=cfg.batch_size,
        shuffle=sampler is None,
        sampler=sampler,
        num_workers=cfg.num_workers,
        drop_last=len(crops) >= cfg.batch_size * world,
        generator=torch.Generator().manual_seed(cfg.seed + start_epoch) if sampler is None else None,
    )
    steps_per_epoch = max(1, len(loader))
    total_steps = cfg.max_steps if cfg.max_steps is not None else cfg.epochs * steps_per_epoch
    budget = cfg.minutes * 60 if cfg.minutes is not None else math.inf

    log_path = out / "log.csv"
    writer = None
    if rank == 0:
        new_log = not log_path.is_file() or step == 0
        log_file = log_path.open("w" if new_log else "a", newline="")
        log = csv.writer(log_file)
        if new_log:
            log.writerow(["step", "epoch", "loss", "valid_si_snri_db", "elapsed_s", "lr"])
        try:
            from torch.utils.tensorboard import SummaryWriter

            writer = SummaryWriter(str(out / "tensorboard"))
        except ImportError:
            writer = None
    bar = None
    if rank == 0:
        # Under a time budget the step count is not the limit: count steps, show the time left.
        bar_total = total_steps if math.isinf(budget) else None
        bar = progress_bar(bar_total, desc=f"train {cfg.pattern}", unit="step", enabled=cfg.progress, initial=step)

    def checkpoint(path: Path, epoch: int, valid: float | None) -> None:
        extra = {
            "train_config": dataclasses.asdict(cfg),
            "step": step,
            "valid_si_snri_db": valid,
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
        save_checkpoint(path, enhancer, extra if path == last_path else {k: v for k, v in extra.items() if k != "progress"})

    def validate_and_save(epoch: int) -> None:
        """Every process: rank 0 validates and saves, the others take its score, so that every
        process's learning rate follows the same schedule."""
        nonlocal best
        valid = evaluate_si_snri(enhancer, valid_set) if rank == 0 else 0.0
        if world > 1:
            score = torch.tensor([valid])
            dist.broadcast(score, 0)
            valid = float(score)
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
            writer.add_scalar("valid/si_snri_db", valid, step)

    t0 = time.monotonic()
    running = float("nan")
    epoch = start_epoch
    enhancer.train()
    batches = _batches(loader, crops, sampler, start_epoch)
    while step < total_steps:
        epoch, noisy, clean = next(batches)
        loss = training_loss(cfg.loss, model(noisy), clean, noisy)
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(enhancer.parameters(), cfg.grad_clip)
        optimizer.step()
        step += 1
        value = float(loss.detach())
        running = value if math.isnan(running) else 0.95 * running + 0.05 * value
        stop = torch.tensor([float(elapsed_before + time.monotonic() - t0 >= budget)])
        if world > 1:
            dist.all_reduce(stop)  # every process stops at the same step
        if rank == 0:
            if bar is not None:
                postfix = {"loss": f"{running:.2f}", "epoch": epoch, "best": f"{best:.2f}dB" if best > -math.inf else "-"}
                if not math.isinf(budget):
                    left = max(0.0, budget - (elapsed_before + time.monotonic() - t0))
                    postfix["left"] = f"{int(left // 60)}:{int(left % 60):02d}"
                bar.set_postfix(postfix)
                bar.update(1)
            if writer is not None:
                writer.add_scalar("train/loss", value, step)
        if step % cfg.valid_every == 0:
            validate_and_save(epoch)
        if stop.item() > 0:
            break
    summary: dict[str, Any] = {"steps": step}
    if step % cfg.valid_every != 0 or step == 0:
        validate_and_save(epoch)
    if rank == 0:
        if bar is not None:
            bar.close()
        log_file.close()
        if writer is not None:
            writer.close()
        summary.update(best_valid_si_snri_db=best, last=str(last_path), best=str(best_path), loss=running)
    if world > 1:
        dist.barrier()
        dist.destroy_process_group()
    return summary
