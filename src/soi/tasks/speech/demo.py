"""``soi demo``: the project's main job on a fresh machine, in a few minutes on 2 CPU cores.

1. builds the small default data set if it is absent (speech synthesised offline, real and synthetic
   noises; no download),
2. loads the small trained checkpoint shipped with the package,
3. enhances an unseen noisy example of the test split *streaming*, hop by hop,
4. writes noisy / enhanced / clean WAVs and a spectrogram picture, and prints SI-SNRi, the
   real-time factor, per-hop latency and the cost table for STMC and a few SOI patterns.
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import torch

__all__ = ["ensure_default_data", "default_data_root", "run_demo"]

DEMO_PATTERNS = ("STMC", "S-CC 5", "S-CC 2", "SS-CC 5")


def default_data_root() -> Path:
    """Where the default data set lives: ``$SOI_DATA``, else ``~/.cache/soi/default-data``."""
    env = os.environ.get("SOI_DATA")
    return Path(env) if env else Path.home() / ".cache" / "soi" / "default-data"


def ensure_default_data(root: str | Path | None = None, minutes: float = 3.0, seed: int = 0) -> Path:
    """Build the default data set under ``root`` unless a complete one is there; returns ``root``."""
    from .generate import generate_dataset

    root = Path(root) if root is not None else default_data_root()
    return Path(generate_dataset(root, minutes=minutes, seed=seed, progress=True))


def _spectrogram_png(path: Path, waves: dict[str, torch.Tensor], sample_rate: int) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from .stft import stft

    fig, axes = plt.subplots(len(waves), 1, figsize=(10, 2.6 * len(waves)), sharex=True, constrained_layout=True)
    for ax, (title, wave) in zip(axes, waves.items()):
        spec = stft(wave.double().unsqueeze(0))[0]
        power_db = 10 * torch.log10(spec.square().sum(0) + 1e-10)  # (T, F)
        seconds = power_db.shape[0] * 256 / sample_rate
        im = ax.imshow(
            power_db.T.numpy(), origin="lower", aspect="auto", cmap="magma",
            extent=(0, seconds, 0, sample_rate / 2000), vmin=float(power_db.max()) - 80, vmax=float(power_db.max()),
        )  # fmt: skip
        ax.set_title(title)
        ax.set_ylabel("kHz")
    axes[-1].set_xlabel("seconds")
    fig.colorbar(im, ax=axes, label="dB", shrink=0.8)
    fig.savefig(path, dpi=110)
    plt.close(fig)


def run_demo(out_dir: str | Path = "soi-demo", data_root: str | Path | None = None, example: int = 0, force: bool = True) -> dict:
    from .data import write_wav
    from .metrics import si_snr, si_snr_improvement
    from ...analysis.cost import cost
    from .masker import default_checkpoint_path, load_checkpoint
    from ...train import open_split

    out = Path(out_dir)
    out.mkdir(parents=True, exist_ok=True)
    root = ensure_default_data(data_root)
    test = open_split(root, "test")
    item = test[example % len(test)]
    noisy, clean = (item["noisy"], item["clean"]) if isinstance(item, dict) else item[:2]

    enhancer, meta = load_checkpoint(default_checkpoint_path())
    hop_times: list[float] = []
    t0 = time.perf_counter()
    enhanced = enhancer.enhance_streaming(noisy, chunk_frames=1, hop_times=hop_times)
    elapsed = time.perf_counter() - t0
    with torch.no_grad():
        offline = enhancer(noisy.unsqueeze(0))[0]
    seconds = noisy.shape[-1] / enhancer.sample_rate

    for name, wave in (("noisy", noisy), ("enhanced", enhanced), ("clean", clean)):
        write_wav(out / f"{name}.wav", wave, enhancer.sample_rate, overwrite=force)
    picture = out / "spectrograms.png"
    _spectrogram_png(picture, {"noisy": noisy, "enhanced (streamed hop by hop)": enhanced, "clean": clean}, enhancer.sample_rate)

    hop_ms = sorted(1e3 * t for t in hop_times)
    result = {
        "example": test.pairs[example % len(test)][0].name,
        "si_snr_noisy_db": float(si_snr(noisy.unsqueeze(0), clean.unsqueeze(0))),
        "si_snr_enhanced_db": float(si_snr(enhanced.unsqueeze(0), clean.unsqueeze(0))),
        "si_snri_db": float(si_snr_improvement(enhanced.unsqueeze(0), noisy.unsqueeze(0), clean.unsqueeze(0))),
        "stream_vs_offline_max_abs": float((enhanced - offline).abs().max()),
        "real_time_factor": elapsed / seconds,
        "hop_ms_median": hop_ms[len(hop_ms) // 2],
        "hop_ms_p99": hop_ms[min(len(hop_ms) - 1, round(0.99 * (len(hop_ms) - 1)))],
        "checkpoint_pattern": meta.get("pattern"),
        "files": [str(out / f"{n}.wav") for n in ("noisy", "enhanced", "clean")] + [str(picture)],
    }
    from ...models import UNet

    rate = enhancer.sample_rate / enhancer.hop
    reports = [cost(UNet(enhancer.masker.config, p), frame_rate=rate) for p in DEMO_PATTERNS]
    result["cost_table"] = reports
    return result


def configure(parser: argparse.ArgumentParser) -> None:
    parser.add_argument("--out", default="soi-demo", help="folder for the WAVs and the picture (default soi-demo/)")
    parser.add_argument("--data", help="default data set folder (default $SOI_DATA or ~/.cache/soi/default-data)")
    parser.add_argument("--example", type=int, default=0, help="index of the test example")
    parser.add_argument("--threads", type=int, default=1, help="torch CPU threads for the stream (default 1)")


def run(args: argparse.Namespace) -> int:
    from ...analysis.cost import format_table

    torch.set_num_threads(args.threads)
    r = run_demo(args.out, args.data, args.example)
    print()
    print(f"unseen test example {r['example']} (voice and noise source never seen in training; model trained as {r['checkpoint_pattern']!r}), streamed hop by hop:")
    print(f"  SI-SNR noisy {r['si_snr_noisy_db']:.2f} dB -> enhanced {r['si_snr_enhanced_db']:.2f} dB: SI-SNRi {r['si_snri_db']:+.2f} dB")
    print(f"  streaming vs offline: max |diff| {r['stream_vs_offline_max_abs']:.1e}")
    print(f"  real-time factor {r['real_time_factor']:.3f}; per-hop latency median {r['hop_ms_median']:.2f} ms, p99 {r['hop_ms_p99']:.2f} ms (hop = 16 ms)")
    print("  wrote " + ", ".join(r["files"]))
    print()
    print("cost of the shipped U-Net under SOI patterns (62.5 frames/s):")
    print(format_table(r["cost_table"]))
    return 0
