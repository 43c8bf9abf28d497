"""Live scene classification of a recording: the file (or standard input) is streamed hop by hop
through a :class:`~soi.tasks.scenes.classifier.SceneClassifier`, as a device would hear it.

    soi scenes classify street.wav --checkpoint runs/scenes/best.pt
    arecord -f S16_LE -r 16000 | soi scenes classify - --raw-format s16le --checkpoint best.pt

The input is mixed down to mono (the channel mean) and resampled to the model's rate as it streams
(:class:`soi.tasks.speech.data.StreamingResampler`); the end is zero padded to a whole hop, as the
offline front end pads it. The **timeline** has one line per second of audio: the mean of that
second's frame posteriors, its ``top`` classes (the last line covers what is left after the last
whole second). The **clip label** is the running average of every frame posterior
(:func:`~soi.tasks.classification.running_average` at the last frame). Lines are handed to
``on_line`` as soon as their second has been heard, so a pipe shows the timeline live.
"""

from __future__ import annotations

import sys
import time
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import torch
from torch import Tensor

from ..speech.data import AUDIO_EXTENSIONS, StreamingResampler
from ..speech.enhance import STDIO, _file_source, _stream_source
from .classifier import SceneClassifier
from .frontend import LogMelConfig

__all__ = ["HEADER", "Classification", "TimelineLine", "classify_file", "format_line"]

HEADER = "time  label  probability"
"""The timeline's header line; each line after it is ``format_line``'s."""


@dataclass(frozen=True)
class TimelineLine:
    """One line of the timeline: ``time`` (s, the end of the span), the ``top`` ``(label, probability)``."""

    time: float
    top: tuple[tuple[str, float], ...]


@dataclass(frozen=True)
class Classification:
    """The timeline, the clip's label and probability (the running average at the last frame), the
    clip posterior per class, and what the run took."""

    timeline: tuple[TimelineLine, ...]
    label: str
    probability: float
    clip: dict[str, float]
    frames: int
    seconds_audio: float
    seconds_processing: float
    notes: tuple[str, ...]


def format_line(line: TimelineLine) -> str:
    """``"  3.00  traffic 0.712  market 0.103  rain 0.041"``: the time in seconds, then the top classes."""
    return f"{line.time:6.2f}  " + "  ".join(f"{label} {p:.3f}" for label, p in line.top)


def _top(posterior: Tensor, classes: tuple[str, ...], k: int) -> tuple[tuple[str, float], ...]:
    values, indices = posterior.topk(min(k, len(classes)))
    return tuple((classes[i], float(v)) for v, i in zip(values.tolist(), indices.tolist()))


def check_input(source: str | Path, config: LogMelConfig) -> Path:
    """The audio file ``source``, checked before any model is loaded: an audio extension
    (:data:`soi.tasks.speech.data.AUDIO_EXTENSIONS`), an existing file, at least one analysis window
    of ``config`` long.

    Raises:
        FileNotFoundError: no such file.
        ValueError: another extension, or a recording shorter than one window.
    """
    from ..speech.data import audio_info

    path = Path(source)
    if path.suffix.lower() not in AUDIO_EXTENSIONS:
        raise ValueError(f"{path}: expected an audio file ({', '.join(AUDIO_EXTENSIONS)}), got the extension {path.suffix or '(none)'!r}")
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    info = audio_info(path)
    if info.frames * config.sample_rate < config.n_fft * info.samplerate:
        raise ValueError(
            f"{path} is too short: {info.frames} samples at {info.samplerate} Hz; at least one analysis window "
            f"({config.n_fft} samples at {config.sample_rate} Hz, {1000 * config.n_fft / config.sample_rate:.0f} ms) is needed"
        )
    return path


@torch.no_grad()
def classify_file(
    source: str | Path,
    classifier: SceneClassifier,
    top: int = 3,
    chunk_frames: int = 1,
    raw_format: str | None = None,
    rate: int | None = None,
    channels: int | None = None,
    stdin: BinaryIO | None = None,
    on_line: Callable[[TimelineLine], None] | None = None,
) -> Classification:
    """Stream ``source`` (an audio file, or ``"-"``: standard input or the ``stdin`` binary stream,
    a WAV stream or raw PCM as ``raw_format``, ``rate``, ``channels`` say) through ``classifier``,
    ``chunk_frames`` hops per step (see the module docstring).

    Raises:
        FileNotFoundError: no such file.
        ValueError: an extension that is not audio, a recording shorter than one analysis window,
            raw-PCM options for a file, bad samples (the message says which).
    """
    if top < 1 or chunk_frames < 1:
        raise ValueError(f"classify_file: top and chunk_frames must be >= 1, got {top} and {chunk_frames}")
    from_stdin = str(source) == STDIO
    if not from_stdin and (raw_format is not None or rate is not None or channels is not None):
        raise ValueError("--raw-format, --rate and --channels describe raw PCM on standard input ('-'); a file says its own format")
    classifier = classifier.eval()
    config = classifier.frontend.config
    sr, hop, window = config.sample_rate, config.hop, config.n_fft
    if from_stdin:
        src = _stream_source(stdin if stdin is not None else sys.stdin.buffer, raw_format, rate, channels)
        name = "standard input"
    else:
        src = _file_source(check_input(source, config))
        name = str(source)
    notes = []
    if src.rate != sr:
        notes.append(f"the model runs at {sr} Hz: resampled {src.rate} Hz -> {sr} Hz")
    if src.channels > 1:
        notes.append(f"{src.channels} channels mixed down to mono")
    p = next(classifier.parameters(), None)
    dtype = p.dtype if p is not None else torch.float32
    resampler = StreamingResampler(src.rate, sr, 1, dtype)
    state = classifier.init_state(1, None, dtype)
    per_second = round(classifier.frame_rate)
    lines: list[TimelineLine] = []
    span_sum = torch.zeros(len(classifier.classes), dtype=dtype)
    span_frames = 0
    buffered = torch.zeros(1, 0, dtype=dtype)
    step_samples = chunk_frames * hop
    busy = 0.0
    samples_in = 0

    heard = 0  # frames classified so far

    def close_span() -> None:
        nonlocal span_sum, span_frames
        line = TimelineLine(heard / classifier.frame_rate, _top(span_sum / span_frames, classifier.classes, top))
        lines.append(line)
        if on_line is not None:
            on_line(line)
        span_sum, span_frames = torch.zeros_like(span_sum), 0

    def run(samples: Tensor) -> None:
        nonlocal state, busy, span_sum, span_frames, heard
        t0 = time.perf_counter()
        posteriors, state = classifier.step(samples, state)
        busy += time.perf_counter() - t0
        for t in range(posteriors.shape[2]):
            span_sum = span_sum + posteriors[0, :, t]
            span_frames += 1
            heard += 1
            if span_frames == per_second:
                close_span()

    def feed(y: Tensor, final: bool = False) -> None:
        nonlocal buffered
        buffered = torch.cat([buffered, y], dim=1)
        while buffered.shape[1] >= step_samples:
            run(buffered[:, :step_samples])
            buffered = buffered[:, step_samples:]
        if final and buffered.shape[1]:
            rest = -(-buffered.shape[1] // hop) * hop  # the end zero padded to a whole hop, as log_mel does
            run(torch.nn.functional.pad(buffered, (0, rest - buffered.shape[1])))
            buffered = buffered[:, :0]

    for block in src.blocks(max(step_samples * src.rate // sr, 1)):
        samples_in += block.shape[0]
        mono = torch.from_numpy(block).to(dtype).mean(dim=1, keepdim=True).T  # (1, n)
        feed(resampler.push(mono))
    if samples_in * sr < window * src.rate:
        raise ValueError(
            f"{name} is too short: {samples_in} samples at {src.rate} Hz; at least one analysis window "
            f"({window} samples at {sr} Hz, {1000 * window / sr:.0f} ms) is needed"
        )
    feed(resampler.finish(samples_in), final=True)
    if span_frames:
        close_span()
    clip = state.clip_posterior[0]
    best = int(clip.argmax())
    return Classification(
        timeline=tuple(lines),
        label=classifier.classes[best],
        probability=float(clip[best]),
        clip={c: float(v) for c, v in zip(classifier.classes, clip.tolist())},
        frames=state.frames,
        seconds_audio=samples_in / src.rate,
        seconds_processing=busy,
        notes=tuple(notes),
    )
