"""Audio for ``soi``: the streaming STFT front end, metrics, data sets and the offline data generator.

* :mod:`soi.audio.stft`: :class:`StreamingSTFT` / :class:`StreamingISTFT` (pure ``step``), offline
  :func:`stft` / :func:`istft`, alignment helpers and the latency of the pair.
* :mod:`soi.audio.metrics`: SI-SNR, SI-SNRi, the training loss; PESQ / STOI when installed.
* :mod:`soi.audio.data`: WAV IO, resampling, DNS-layout and paired-folder data sets.
* :mod:`soi.audio.generate`: the default data set, synthesised offline.

WAV IO needs ``soundfile`` (the ``audio`` extra), imported only when a file is read or written.
"""

from .data import (
    AudioFileError,
    DefaultDataset,
    DNSFolderDataset,
    PairedFolderDataset,
    downmix,
    list_audio_files,
    mix_at_snr,
    read_segment,
    read_wav,
    resample,
    write_wav,
)
from .metrics import neg_si_snr_loss, pesq_score, si_snr, si_snr_improvement, stoi_score
from .stft import (
    HOP,
    N_FFT,
    SAMPLE_RATE,
    ISTFTState,
    STFTState,
    StreamingISTFT,
    StreamingSTFT,
    enhance_offline,
    enhance_streaming,
    frames_for,
    istft,
    latency_samples,
    pad_for_streaming,
    samples_for,
    stft,
    stft_window,
    trim_streamed,
)

__all__ = [
    # stft
    "SAMPLE_RATE",
    "N_FFT",
    "HOP",
    "STFTState",
    "ISTFTState",
    "StreamingSTFT",
    "StreamingISTFT",
    "stft",
    "istft",
    "stft_window",
    "latency_samples",
    "frames_for",
    "samples_for",
    "pad_for_streaming",
    "trim_streamed",
    "enhance_offline",
    "enhance_streaming",
    # metrics
    "si_snr",
    "si_snr_improvement",
    "neg_si_snr_loss",
    "pesq_score",
    "stoi_score",
    # data
    "AudioFileError",
    "read_wav",
    "read_segment",
    "write_wav",
    "resample",
    "downmix",
    "mix_at_snr",
    "list_audio_files",
    "DNSFolderDataset",
    "PairedFolderDataset",
    "DefaultDataset",
    # generator
    "generate_dataset",
    "make_sentence",
]


def __getattr__(name: str):
    # The generator is imported on first use, so that `python -m soi.audio.generate` does not
    # find its own module already imported by this package (runpy warns about that).
    if name in ("generate_dataset", "make_sentence"):
        from . import generate

        return getattr(generate, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
