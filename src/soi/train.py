"""Training the speech-separation U-Net: speech as a task of the one loop (:mod:`soi.training`),
single process or DDP (``torchrun``, gloo on CPU).

SI-SNR with the output's level pinned to the speech's (default), a compressed spectral loss or the
plain negative SI-SNR, on the offline path (which *is* the streaming path run over the whole sequence), a
bounded mask (default), weights from another checkpoint (``init_from``: fine-tuning into an SOI
pattern), Adam, checkpoints ``last.pt`` and ``best.pt`` (best validation SI-SNRi), resume, seeds, a
wall-clock budget, a progress bar with loss and ETA, and a CSV log (plus TensorBoard when the
``tensorboard`` package is installed).

    soi train --data data/default --out runs/stmc --pattern STMC --minutes 10
    torchrun --nproc_per_node 2 -m soi train --data ... --out ...
"""

from __future__ import annotations

import dataclasses
import json
import random
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch
from torch import Tensor
from torch.utils.data import Dataset

from .models.unet import UNetConfig, parse_pattern
from .tasks.speech.data import noisy_clean, open_split
from .tasks.speech.masker import (
    MASK_BOUNDS,
    SpectralMasker,
    SpeechEnhancer,
    read_checkpoint,
    save_checkpoint,
    unet_config_of,
)
from .tasks.speech.metrics import LOSSES, si_snr_improvement, training_loss
from .training import LOOP, RUN_FILES, LoopConfig, Score, check_fields, run_training

__all__ = ["RUN_FILES", "SpeechTask", "TrainConfig", "evaluate_si_snri", "init_weights", "train"]

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
    loss: str = "si-snr-level"
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
        check_fields(
            self,
            strings=("data", "out_dir", "model_config", "pattern", "upsampler"),
            integers=LOOP.integers,
            positive=(("segment_seconds", False), *LOOP.positive),
        )
        if self.mask_bound not in MASK_BOUNDS:
            raise ValueError(f"TrainConfig.mask_bound must be one of {', '.join(MASK_BOUNDS)}, got {self.mask_bound!r}")
        if self.loss not in LOSSES:
            raise ValueError(f"TrainConfig.loss must be one of {', '.join(LOSSES)}, got {self.loss!r}")
        if isinstance(self.remix, bool) or not isinstance(self.remix, (int, float)) or not 0.0 <= self.remix <= 1.0:
            raise ValueError(f"TrainConfig.remix is the share of remixed training crops, a number in [0, 1], got {self.remix!r}")
        if self.init_from is not None and (not isinstance(self.init_from, str) or not self.init_from.strip()):
            raise ValueError(f"TrainConfig.init_from must be a checkpoint path or null, got {self.init_from!r}")
        check_fields(self, booleans=LOOP.booleans)

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


# -- the task ---------------------------------------------------------------------------------------


def build_enhancer(cfg: TrainConfig) -> SpeechEnhancer:
    unet_config = UNetConfig.from_json(cfg.model_config)
    masker = SpectralMasker(unet_config, cfg.pattern, mask_bound=cfg.mask_bound, upsampler=cfg.upsampler)
    # The U-Net's frequency bins fix the STFT: F = n_fft/2 + 1, with the paper's 75 % overlap.
    n_fft = 2 * (unet_config.freq_bins - 1)
    return SpeechEnhancer(masker, n_fft=n_fft, hop=n_fft // 4)


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


SCORE = Score("valid_si_snri_db", "valid SI-SNRi", "dB")


class SpeechTask:
    """Speech separation as a :class:`soi.training.Task`: a :class:`SpeechEnhancer`, random crops of
    (noisy, clean) pairs (remixed as ``cfg.remix`` says), the configured training loss, validation
    SI-SNRi on whole files."""

    score = SCORE

    def __init__(self, cfg: TrainConfig) -> None:
        self.cfg = cfg
        self.name = cfg.pattern

    def config_dict(self) -> dict[str, Any]:
        return dataclasses.asdict(self.cfg)

    def build_model(self) -> SpeechEnhancer:
        return build_enhancer(self.cfg)

    def read_checkpoint(self, path: Path) -> dict[str, Any]:
        return read_checkpoint(path)

    def check_resumable(self, path: Path, payload: dict[str, Any], model: SpeechEnhancer) -> None:
        _check_resumable(path, payload, self.cfg, model)

    def fresh_start(self, model: SpeechEnhancer, rank: int) -> None:
        if self.cfg.init_from is not None:
            fresh = init_weights(model, self.cfg.init_from)
            if rank == 0:
                print(f"initialised from {self.cfg.init_from}" + (f"; new here (initialised fresh): {', '.join(fresh)}" if fresh else ""))

    def open_data(self) -> None:
        self.train_set = open_split(self.cfg.data, "train")
        self.valid_set = open_split(self.cfg.data, "valid")

    def train_data(self, model: SpeechEnhancer) -> RandomCrops:
        return RandomCrops(self.train_set, int(self.cfg.segment_seconds * model.sample_rate), self.cfg.seed, self.cfg.remix)

    def loss(self, model: torch.nn.Module, batch: tuple[Tensor, Tensor]) -> Tensor:
        noisy, clean = batch
        return training_loss(self.cfg.loss, model(noisy), clean, noisy)

    def validate(self, model: SpeechEnhancer) -> float:
        return evaluate_si_snri(model, self.valid_set)

    def save_checkpoint(self, path: Path, model: SpeechEnhancer, extra: dict[str, Any]) -> None:
        save_checkpoint(path, model, extra)


def loop_config(cfg: TrainConfig) -> LoopConfig:
    """The task-independent part of ``cfg``."""
    return LoopConfig(**{f.name: getattr(cfg, f.name) for f in dataclasses.fields(LoopConfig)})


def train(cfg: TrainConfig, force: bool = False) -> dict[str, Any]:
    """Train a speech model with the one loop (:func:`soi.training.run_training`); returns a summary
    (steps, best validation SI-SNRi, checkpoint paths).

    A run folder that holds ``last.pt`` is resumed (unless ``cfg.resume`` is false), with the same
    model only. Files of an earlier run that this run would replace without resuming from them
    (:data:`RUN_FILES`) are replaced only with ``force``. The folder is checked writable first.

    Raises:
        FileExistsError: the folder holds an earlier run's files and ``force`` is false.
        ValueError: resuming a run whose model config, pattern or upsampler differ from ``cfg``;
            a bad config, data set or checkpoint.
    """
    return run_training(SpeechTask(cfg), loop_config(cfg), force)
