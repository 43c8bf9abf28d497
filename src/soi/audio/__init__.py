"""Audio for ``soi``: the streaming STFT front end, metrics, data sets and the offline data generator.

* :mod:`soi.audio.stft`: :class:`StreamingSTFT` / :class:`StreamingISTFT` (pure ``step``), offline
  :func:`stft` / :func:`istft`, alignment helpers and the latency of the pair.
* :mod:`soi.audio.metrics`: SI-SNR, SI-SNRi, the training loss; PESQ / STOI when installed.
* :mod:`soi.audio.data`: WAV IO, resampling, DNS-layout and paired-folder data sets.
* :mod:`soi.audio.generate`: the default data set, synthesised offline.

WAV IO needs ``soundfile`` (the ``audio`` extra), imported only when a file is read or written.
"""

from . import data as _data
from . import metrics as _metrics
from . import stft as _stft
from .data import *  # noqa: F403 - each submodule's __all__ is the package's API
from .metrics import *  # noqa: F403
from .stft import *  # noqa: F403

__all__ = [*_stft.__all__, *_metrics.__all__, *_data.__all__, "generate_dataset", "make_sentence"]


def __getattr__(name: str):
    # The generator is imported on first use, so that `python -m soi.audio.generate` does not
    # find its own module already imported by this package (runpy warns about that).
    if name in ("generate_dataset", "make_sentence"):
        from . import generate

        return getattr(generate, name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")
