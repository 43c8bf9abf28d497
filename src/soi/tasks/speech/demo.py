"""``soi demo``: the project's main job on a fresh machine, in a few minutes on 2 CPU cores.

1. builds the small default data set if it is absent (speech synthesised offline, real and synthetic
   noises; no download),
2. loads the trained checkpoint shipped with the package (the medium STMC U-Net),
3. writes an unseen noisy example of the test split (and its clean speech) as WAVs and enhances
   it as ``soi enhance`` does, *streaming* hop by hop, into ``enhanced.wav``,
4. writes a spectrogram picture and reports SI-SNRi measured on the written files, the
   real-time factor, per-hop latency and the cost table for STMC and a few SOI patterns.

The output folder is checked writable before anything runs. A rerun replaces the files an earlier
demo wrote there (recorded in ``.soi-written``, :class:`soi.files.WrittenFiles`); a file of the same
name that soi did not write is replaced only with ``force``.
"""

from __future__ import annotations

import os
import tempfile
from pathlib import Path
from typing import Any

import torch

from ...files import WrittenFiles, check_output_folder, write_file

__all__ = ["ensure_default_data", "default_data_root", "run_demo"]

DEMO_PATTERNS = ("STMC", "S-CC 5", "S-CC 2", "SS-CC 5")


def default_data_root() -> Path:
    """Where the default data set lives: ``$SOI_DATA``, else ``~/.cache/soi/default-data``."""
    env = os.environ.get("SOI_DATA")
    return Path(env) if env else Path.home() / ".cache" / "soi" / "default-data"


def ensure_default_data(root: str | Path | None = None, minutes: float = 3.0, seed: int = 0, progress: bool = True) -> Path:
    """The data set at ``root``: a complete one soi generated there is used as it is (whatever its
    parameters); otherwise the default set is built there. ``root`` None is
    :func:`default_data_root`; only there, in soi's own cache, is a set with other parameters
    rebuilt without asking (removing only the files soi wrote). Returns the folder."""
    from .generate import generate_dataset, is_complete

    cache = root is None and "SOI_DATA" not in os.environ
    root = Path(root) if root is not None else default_data_root()
    if not cache and is_complete(root):
        return root
    return Path(generate_dataset(root, minutes=minutes, seed=seed, progress=progress, overwrite=cache))


def _spectrogram_png(path: Path, waves: dict[str, torch.Tensor], sample_rate: int) -> None:
    """Write the spectrograms of ``waves`` one above the other to the PNG file ``path`` (replaced)."""
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
    write_file(path, lambda f: fig.savefig(f, format="png", dpi=110), force=True)
    plt.close(fig)


def run_demo(
    out_dir: str | Path = "soi-demo",
    data_root: str | Path | None = None,
    example: int = 0,
    force: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Run the demo (see the module docstring) on test example ``example`` of the default data set
    at ``data_root`` and write its files to ``out_dir`` (over files soi did not write there only
    when ``force``). ``progress`` draws the data generator's bars on a terminal.

    Returns the figures, all measured on the files as written (read back): SI-SNR of the noisy
    and the enhanced example and the improvement, the largest difference between the streamed file
    and an offline run's file, the enhanced file's peak and the samples the limiter turned down, the
    real-time factor, per-hop latency, the files written and ``cost_table`` (a :class:`~soi.analysis.cost.CostReport` per pattern of
    :data:`DEMO_PATTERNS`).
    """
    from ...analysis.cost import cost
    from .data import noisy_clean, open_split, read_wav, write_wav
    from .enhance import enhance_file
    from .masker import default_checkpoint_path, load_checkpoint
    from .metrics import si_snr, si_snr_improvement

    out = check_output_folder(out_dir)
    root = ensure_default_data(data_root, progress=progress)
    test = open_split(root, "test")
    if not 0 <= example < len(test):
        raise ValueError(f"example {example} is out of range: the test split of {root} has {len(test)} example(s), 0 to {len(test) - 1}")
    record = WrittenFiles(out)
    names = [f"{n}.wav" for n in ("noisy", "enhanced", "clean")] + ["spectrograms.png"]
    paths = record.claim_all(names, force=force)  # refused here, before the work
    noisy, clean = noisy_clean(test[example])

    enhancer, meta = load_checkpoint(default_checkpoint_path())
    # noisy.wav and clean.wav first: the example is enhanced the way a user enhances a file
    # (`soi enhance noisy.wav -o enhanced.wav`, streamed hop by hop, limiter and 16-bit PCM
    # included), and every figure is measured on the files as written.
    for path, wave in ((paths[0], noisy), (paths[2], clean)):
        write_wav(path, wave, enhancer.sample_rate, overwrite=True)
    run = enhance_file(paths[0], paths[1], enhancer, force=True)
    noisy, clean, enhanced = (read_wav(p, enhancer.sample_rate)[0] for p in (paths[0], paths[2], paths[1]))
    with tempfile.TemporaryDirectory(dir=out) as scratch:  # offline blocks, for the streaming == offline check
        offline_file = enhance_file(paths[0], Path(scratch) / "offline.wav", enhancer, offline=True).output
        offline = read_wav(offline_file, enhancer.sample_rate)[0]
    _spectrogram_png(paths[3], {"noisy": noisy, "enhanced (streamed hop by hop)": enhanced, "clean": clean}, enhancer.sample_rate)
    for name in names:
        record.written(name)

    result = {
        "example": test.pairs[example][0].name,
        "si_snr_noisy_db": float(si_snr(noisy.unsqueeze(0), clean.unsqueeze(0))),
        "si_snr_enhanced_db": float(si_snr(enhanced.unsqueeze(0), clean.unsqueeze(0))),
        "si_snri_db": float(si_snr_improvement(enhanced.unsqueeze(0), noisy.unsqueeze(0), clean.unsqueeze(0))),
        "stream_vs_offline_max_abs": float((enhanced - offline).abs().max()),
        "peak": run.peak,
        "limited_samples": run.limited_samples,
        "real_time_factor": run.real_time_factor,
        "hop_ms_median": run.hop_ms_median,
        "hop_ms_p99": run.hop_ms_p99,
        "checkpoint_pattern": meta.get("pattern"),
        "files": [str(p) for p in paths],
    }
    from ...models import UNet

    rate = enhancer.sample_rate / enhancer.hop
    reports = [cost(UNet(enhancer.masker.config, p), frame_rate=rate) for p in DEMO_PATTERNS]
    result["cost_table"] = reports
    return result

