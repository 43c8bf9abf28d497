"""Speech separation, the SOI paper's first task: the streaming STFT front end, the spectral
masker around the U-Net, metrics, data sets, the offline data generator, enhancement, evaluation,
ONNX export of a checkpoint and the demo.

* :mod:`.stft`: :class:`StreamingSTFT` / :class:`StreamingISTFT` (pure ``step``), offline
  :func:`stft` / :func:`istft`, alignment helpers and the latency of the pair.
* :mod:`.masker`: :class:`SpectralMasker`, :class:`SpeechEnhancer`, checkpoints.
* :mod:`.metrics`: SI-SNR, SI-SNRi, the training loss; PESQ / STOI when installed.
* :mod:`.data`: WAV IO, resampling, DNS-layout and paired-folder data sets.
* :mod:`.generate`: the default data set, synthesised offline.

WAV IO needs ``soundfile`` (the ``audio`` extra), imported only when a file is read or written.
"""

from . import data as _data
from . import masker as _masker
from . import metrics as _metrics
from . import stft as _stft
from .data import *  # noqa: F403 - each submodule's __all__ is the package's API
from .generate import generate_dataset, make_sentence
from .masker import *  # noqa: F403
from .metrics import *  # noqa: F403
from .stft import *  # noqa: F403

__all__ = [*_stft.__all__, *_masker.__all__, *_metrics.__all__, *_data.__all__, "generate_dataset", "make_sentence"]  # noqa: F405
