"""Acoustic scene classification, the SOI paper's second task (sections 3.2 and 4.2): the streaming
log-mel front end, the default scene data set built offline from real recordings in Debian packages,
a reader of the TAU/DCASE layout, the streaming classifier around a GhostNet, training glue,
evaluation and live classification of a WAV file.

* :mod:`.frontend`: :class:`StreamingLogMel` (pure ``step``) and the offline :func:`log_mel`.
"""

from .frontend import LogMelConfig, LogMelState, StreamingLogMel, log_mel, mel_filters

__all__ = ["LogMelConfig", "LogMelState", "StreamingLogMel", "log_mel", "mel_filters"]
