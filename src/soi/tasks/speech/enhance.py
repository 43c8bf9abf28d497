"""``soi enhance``: stream noisy audio hop by hop through a trained model, from a file or a pipe.

    soi enhance noisy.wav -o enhanced.wav [--checkpoint model.pt] [--pattern "S-CC 2"] [--offline] [--force]
    arecord -f S16_LE -r 16000 | soi enhance - -o - --raw-format s16le --rate 16000 | aplay -f S16_LE -r 16000

**The output is the input's shape.** The written file has the input's length, rate, channel count
and sample format, and is aligned with it sample for sample:

* rate: the model runs at its own rate (16 kHz); the input is resampled to it and the result back
  to the input's rate (:class:`soi.tasks.speech.data.StreamingResampler`, band-limited sinc);
* channels: each channel is one stream of a batch (the model streams ``B = channels`` at once), so
  channel ``c`` of a multichannel file is exactly what enhancing channel ``c`` alone gives;
* sample format: 16/24-bit PCM stays 16/24-bit, float stays float (FLAC has no float: 24-bit);
* format: WAV or FLAC by the output's extension (no extension: WAV); any other is refused before
  any work (:data:`soi.tasks.speech.data.OUTPUT_FORMATS`);
* level: never clipped. A streaming, causal peak limiter (:class:`soi.tasks.speech.limiter.PeakLimiter`:
  instant attack, 80 ms release, soft knee from -1 dBFS, ceiling -0.1 dBFS) is the last stage of
  streaming and offline enhancement alike, so no sample beyond full scale ever reaches the writer.

**Pipeline** (:class:`EnhanceStream`): input blocks -> resample to 16 kHz -> STFT analysis ->
masker -> overlap-add synthesis -> resample back -> limiter -> output blocks. Every stage keeps its
state between blocks and emits each output sample as soon as the input it needs has arrived, so
memory is bounded by the block size and the result depends only on the sequence of block sizes.

**Streaming** (the default) feeds ``chunk_frames`` hops per step and reports the real-time factor and
the per-step latency (arrival of a block to its output). **Offline** (``offline=True``) feeds
:data:`OFFLINE_BLOCK_FRAMES` hops per step through the same streaming step (the network batched
over a block of frames instead of one): memory stays bounded by one block (a 10-minute file no
longer holds every layer's activations for the whole file), and the samples equal the streamed
ones up to float32 rounding (the same arithmetic, summed in another order: differences of about
1e-7, well below one 16-bit step), which is also :meth:`SpeechEnhancer.forward`'s result.

**Pipes.** ``noisy = "-"`` reads standard input: a WAV stream (its header's length, or an unknown
length, read to the end), or raw PCM with ``raw_format`` (``s16le``, ``s24le``, ``f32le``),
``raw_rate`` and ``raw_channels``. ``output = "-"`` writes standard output hop by hop, flushed after
every step: raw PCM of the same format when the input was raw, else WAV with the input's sample
format (the header carries the length when it is known, from a file or a WAV header, and
``0xFFFFFFFF``, "unknown, read to the end", as ``arecord`` and ``ffmpeg`` write to a pipe, otherwise).
A FIFO or character device output (``-o /dev/stdout``, a named pipe) is streamed the same way.

Everything about the output is checked before the work starts (:func:`soi.files.check_output_file`:
not a folder, not the input, ``force`` for an existing file, a folder soi can write in, a known
extension), so a mistake is reported at once, not after a long file has been processed. A file is
written to a temporary file renamed into place at the end, so an interrupted run leaves nothing.
"""

from __future__ import annotations

import math
import os
import stat
import statistics
import sys
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import BinaryIO

import numpy as np
import torch
from torch import Tensor

from ...files import check_output_file, write_file
from ...progress import progress_bar
from .limiter import PeakLimiter
from .masker import SpeechEnhancer, load_checkpoint

__all__ = ["EnhanceResult", "EnhanceStream", "enhance_file", "enhance_wave", "OFFLINE_BLOCK_FRAMES", "STDIO"]

OFFLINE_BLOCK_FRAMES = 512
"""Hops per step of ``--offline`` (8 s at 16 kHz): large enough that the network runs batched over
time (as fast as a whole-file forward), small enough that memory stays bounded (about 0.2 GB per
channel for the shipped model)."""

STDIO = "-"
"""The input or output name of standard input / standard output."""


@dataclass(frozen=True)
class EnhanceResult:
    output: Path | str
    format: str
    subtype: str
    samples: int
    sample_rate: int
    channels: int
    seconds_audio: float
    seconds_processing: float
    real_time_factor: float
    hop_ms_median: float | None
    hop_ms_p99: float | None
    peak: float
    limited_samples: int
    notes: tuple[str, ...]


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


class EnhanceStream:
    """Enhance ``channels`` streams at ``rate`` Hz block by block (see the module docstring).

    ``push(x)`` takes ``(C, n)`` float samples (any ``n >= 0``) and returns the ``(C, m)`` enhanced
    samples ready so far; ``finish()`` returns the rest, so that in all exactly as many samples come
    out as went in, aligned with them. ``chunk_frames`` hops of the model go through each network
    step. ``limit=False`` leaves the limiter out (for tests of the model path alone).
    """

    def __init__(self, enhancer: SpeechEnhancer, rate: int, channels: int = 1, chunk_frames: int = 1, limit: bool = True) -> None:
        from .data import StreamingResampler

        if chunk_frames < 1:
            raise ValueError(f"EnhanceStream: chunk_frames must be >= 1, got {chunk_frames}")
        if channels < 1 or rate < 1:
            raise ValueError(f"EnhanceStream: need a positive rate and channel count, got {rate} Hz and {channels}")
        self.enhancer = enhancer.eval()
        self.rate, self.channels = int(rate), int(channels)
        p = next(enhancer.parameters(), None)
        self.dtype = p.dtype if p is not None else torch.float32
        sr, hop = enhancer.sample_rate, enhancer.hop
        self.to_model = StreamingResampler(self.rate, sr, channels, self.dtype)
        self.from_model = StreamingResampler(sr, self.rate, channels, self.dtype)
        self.limiter = PeakLimiter(self.rate, channels) if limit else None
        self._state = enhancer.init_state(channels, None, self.dtype)
        self.step_samples = chunk_frames * hop
        self._buf = torch.zeros(channels, 0, dtype=self.dtype)  # model-rate samples waiting for a whole step
        self._drop = enhancer.n_fft - hop  # the STFT pair's delay: the first outputs precede the input
        self._model_in = 0  # model-rate samples in
        self._model_out = 0  # model-rate samples out (after the drop)
        self._pending = torch.zeros(channels, 0, dtype=self.dtype)  # output beyond the input's length so far
        self.samples_in = 0
        self.samples_out = 0
        self.finished = False

    # -- the model at its rate --

    def _step(self, x: Tensor) -> Tensor:
        y, self._state = self.enhancer.step(x, self._state)
        if self._drop:
            cut = min(self._drop, y.shape[1])
            y, self._drop = y[:, cut:], self._drop - cut
        return y

    def _model(self, y: Tensor, final: bool = False) -> Tensor:
        self._buf = torch.cat([self._buf, y], dim=1) if self._buf.shape[1] else y
        outs = []
        size = self.step_samples
        while self._buf.shape[1] >= size or (final and self._buf.shape[1]):
            n = min(size, self._buf.shape[1])  # the last step of a stream: a whole number of hops, fewer
            outs.append(self._step(self._buf[:, :n]))
            self._buf = self._buf[:, n:]
        out = torch.cat(outs, dim=1) if outs else self._buf.new_zeros((self.channels, 0))
        self._model_out += out.shape[1]
        return out

    # -- the stream at the input's rate --

    def _emit(self, z: Tensor, final: bool = False) -> Tensor:
        z = torch.cat([self._pending, z], dim=1) if self._pending.shape[1] else z
        n = min(z.shape[1], self.samples_in - self.samples_out)
        z, self._pending = z[:, :n], z[:, n:]
        if final:
            self._pending = self._pending[:, :0]
        self.samples_out += n
        return self.limiter(z) if self.limiter is not None else z

    @torch.no_grad()
    def push(self, x: Tensor | np.ndarray) -> Tensor:
        """Append ``(C, n)`` input samples; returns the ``(C, m)`` output samples now ready."""
        if self.finished:
            raise RuntimeError("EnhanceStream.push after finish")
        x = torch.as_tensor(x).to(self.dtype)
        if x.dim() != 2 or x.shape[0] != self.channels:
            raise ValueError(f"EnhanceStream.push: expected ({self.channels}, n) samples, got {tuple(x.shape)}")
        self.samples_in += x.shape[1]
        y = self.to_model.push(x)
        self._model_in += y.shape[1]
        return self._emit(self.from_model.push(self._model(y)))

    @torch.no_grad()
    def finish(self) -> Tensor:
        """The remaining output samples: the end of the input is followed by zeros for as long as
        the resamplers and the model need to emit their last samples."""
        if self.finished:
            raise RuntimeError("EnhanceStream.finish called twice")
        self.finished = True
        e = self.enhancer
        y = self.to_model.finish(self.samples_in)
        self._model_in += y.shape[1]
        total = self._model_in
        # as soi.tasks.speech.stft.pad_for_streaming: the STFT delay and the network's look-ahead
        padded = e.hop * math.ceil((total + e.n_fft - e.hop + e.masker.delay * e.hop) / e.hop)
        y = torch.cat([y, y.new_zeros((self.channels, padded - total))], dim=1)
        before = self._model_out
        out = self._model(y, final=True)
        out = out[:, : max(0, total - before)]
        z = torch.cat([self.from_model.push(out), self.from_model.finish(total)], dim=1)
        return self._emit(z, final=True)


# -- sources and sinks --------------------------------------------------------------------------------


@dataclass
class _Source:
    rate: int
    channels: int
    subtype: str
    frames: int | None  # None: unknown (a pipe)
    blocks: Callable[[int], Iterator[np.ndarray]]  # block size -> (n, C) float32 blocks
    raw: bool = False


def _file_source(path: Path) -> _Source:
    from .data import AudioFileError, _soundfile, audio_info, check_finite

    info = audio_info(path)

    def blocks(size: int) -> Iterator[np.ndarray]:
        sf = _soundfile()
        offset = 0
        try:
            with sf.SoundFile(str(path)) as f:
                while True:
                    block = f.read(size, dtype="float32", always_2d=True)
                    if block.shape[0] == 0:
                        return
                    check_finite(block, str(path), offset)
                    offset += block.shape[0]
                    yield block
        except RuntimeError as err:
            raise AudioFileError(f"{path}: could not decode the audio ({err})") from err

    return _Source(info.samplerate, info.channels, info.subtype, info.frames, blocks)


def _stream_source(stream: BinaryIO, raw_format: str | None, rate: int | None, channels: int | None) -> _Source:
    from .data import RAW_FORMATS, check_finite, decode_pcm, read_wav_header, sample_bytes

    if raw_format is not None:
        if raw_format not in RAW_FORMATS:
            raise ValueError(f"unknown raw sample format {raw_format!r}; use one of {', '.join(RAW_FORMATS)}")
        subtype, rate, channels, data_bytes = RAW_FORMATS[raw_format], rate or 16000, channels or 1, None
    else:
        if rate is not None or channels is not None:
            raise ValueError("--rate and --channels describe raw PCM: give them with --raw-format (a WAV stream says its own)")
        rate, channels, subtype, data_bytes = read_wav_header(stream)
    frame = sample_bytes(subtype) * channels

    def blocks(size: int) -> Iterator[np.ndarray]:
        left, offset, carry = data_bytes, 0, b""
        while True:
            want = size * frame - len(carry) if left is None else min(size * frame - len(carry), left)
            data = (stream.read(want) if want > 0 else b"") or b""  # a buffered read: `want` bytes unless the stream ends
            if left is not None:
                left -= len(data)
            end = len(data) < want or left == 0
            data = carry + data
            whole = len(data) // frame * frame
            carry = data[whole:]
            if whole:
                block = decode_pcm(data[:whole], subtype, channels)
                check_finite(block, "standard input", offset)
                offset += block.shape[0]
                yield block
            if end:
                return

    frames = None if data_bytes is None else data_bytes // frame
    return _Source(rate, channels, subtype, frames, blocks, raw=raw_format is not None)


class _StreamSink:
    """Blocks to a binary stream as they come, flushed after each: raw PCM, or WAV with a header."""

    def __init__(self, stream: BinaryIO, rate: int, channels: int, subtype: str, frames: int | None, wav: bool) -> None:
        from .data import wav_header

        self.stream, self.subtype = stream, subtype
        if wav:
            stream.write(wav_header(rate, channels, subtype, frames))
            stream.flush()

    def write(self, block: np.ndarray) -> None:
        from .data import encode_pcm

        if block.shape[0]:
            self.stream.write(encode_pcm(block, self.subtype))
            self.stream.flush()


class _SoundFileSink:
    def __init__(self, f: BinaryIO, rate: int, channels: int, subtype: str, fmt: str) -> None:
        from .data import _soundfile

        self.file = _soundfile().SoundFile(f, "w", samplerate=rate, channels=channels, subtype=subtype, format=fmt)

    def write(self, block: np.ndarray) -> None:
        if block.shape[0]:
            self.file.write(block)

    def close(self) -> None:
        self.file.close()


def _is_stream_target(path: Path) -> bool:
    try:
        st = os.stat(path)
    except OSError:
        return False
    if stat.S_ISCHR(st.st_mode) or stat.S_ISFIFO(st.st_mode):
        return True
    try:
        return os.path.samestat(st, os.fstat(sys.stdout.fileno()))
    except (OSError, ValueError, AttributeError):
        return False


# -- the entry points ---------------------------------------------------------------------------------


def _run(
    source: _Source,
    sink_write: Callable[[np.ndarray], None],
    enhancer: SpeechEnhancer,
    chunk_frames: int,
    hop_times: list[float] | None,
    on_block: Callable[[int], None] | None = None,
) -> EnhanceStream:
    stream = EnhanceStream(enhancer, source.rate, source.channels, chunk_frames)
    # input samples per block: one network step's worth at the input's rate
    size = max(1, math.ceil(chunk_frames * enhancer.hop * source.rate / enhancer.sample_rate))
    stream.busy_s = 0.0  # time spent processing and writing, not waiting for input (a live stream)
    for block in source.blocks(size):
        t0 = time.perf_counter()
        out = stream.push(block.T)
        if hop_times is not None:
            hop_times.append(time.perf_counter() - t0)
        sink_write(out.T.contiguous().numpy())
        stream.busy_s += time.perf_counter() - t0
        if on_block is not None:
            on_block(block.shape[0])
    t0 = time.perf_counter()
    sink_write(stream.finish().T.contiguous().numpy())
    stream.busy_s += time.perf_counter() - t0
    return stream


def enhance_file(
    noisy: str | Path,
    output: str | Path,
    enhancer: SpeechEnhancer | None = None,
    offline: bool = False,
    force: bool = False,
    chunk_frames: int = 1,
    progress: bool = False,
    raw_format: str | None = None,
    rate: int | None = None,
    channels: int | None = None,
    stdin: BinaryIO | None = None,
    stdout: BinaryIO | None = None,
) -> EnhanceResult:
    """Enhance ``noisy`` into ``output`` (see the module docstring); either may be ``"-"`` (standard
    input / output, or the ``stdin`` / ``stdout`` binary streams given). Refuses to overwrite an
    existing output unless ``force``, and never writes over the input file. ``raw_format``,
    ``rate`` and ``channels`` describe raw PCM on standard input. ``progress`` draws a bar of the
    audio processed on a terminal (:func:`soi.progress.progress_bar`)."""
    from .data import audio_format, writable_subtype

    if chunk_frames < 1:
        raise ValueError(f"enhance_file: chunk_frames must be >= 1, got {chunk_frames}")
    from_stdin = str(noisy) == STDIO
    to_stdout = str(output) == STDIO
    if not from_stdin and (raw_format is not None or rate is not None or channels is not None):
        raise ValueError("--raw-format, --rate and --channels describe raw PCM on standard input ('-'); a file says its own format")
    source = None
    if not from_stdin:
        noisy = Path(noisy)
        source = _file_source(noisy)
    if to_stdout:
        fmt, target = ("RAW" if raw_format is not None else "WAV"), None
    else:
        target = check_output_file(output, force=force, inputs=[] if from_stdin else [noisy])  # before Path(): "" is not "."
        output = Path(output)
        fmt = audio_format(output)
    if enhancer is None:
        enhancer, _ = load_checkpoint()
    if source is None:
        source = _stream_source(stdin if stdin is not None else sys.stdin.buffer, raw_format, rate, channels)
    sr = enhancer.sample_rate
    if source.frames is not None and not from_stdin and math.ceil(source.frames * sr / source.rate) < enhancer.n_fft:
        raise ValueError(
            f"{noisy} is too short: {source.frames} samples at {source.rate} Hz; at least one STFT window "
            f"({enhancer.n_fft} samples at {sr} Hz, {1000 * enhancer.n_fft / sr:.0f} ms) is needed"
        )
    notes = []
    if source.rate != sr:
        notes.append(f"the model runs at {sr} Hz: resampled {source.rate} Hz -> {sr} Hz and back to {source.rate} Hz")
    if source.channels > 1:
        notes.append(f"{source.channels} channels enhanced as {source.channels} streams")

    streamed = to_stdout or (target is not None and _is_stream_target(target) and fmt == "WAV")
    if streamed:
        from .data import _SAMPLE_BYTES

        subtype = source.subtype if fmt == "RAW" else writable_subtype("WAV", source.subtype)
        subtype = subtype if subtype in _SAMPLE_BYTES else "PCM_16"
    else:
        subtype = writable_subtype(fmt, source.subtype)
    hop_times: list[float] | None = None if offline else []
    steps = OFFLINE_BLOCK_FRAMES if offline else chunk_frames
    seconds_total = None if source.frames is None else round(source.frames / source.rate, 2)
    label = "standard input" if from_stdin else noisy.name
    bar = progress_bar(seconds_total, desc=f"enhance {label}", unit="s", enabled=progress, leave=False)

    def on_block(n: int) -> None:
        bar.update(n / source.rate)

    peak = [0.0]

    def checked(write: Callable[[np.ndarray], None]) -> Callable[[np.ndarray], None]:
        def w(block: np.ndarray) -> None:
            if block.size:
                peak[0] = max(peak[0], float(np.abs(block).max()))
            write(block)

        return w

    t0 = time.perf_counter()
    if streamed:
        out_stream = stdout if stdout is not None else sys.stdout.buffer
        handle = None
        if not to_stdout:
            handle = out_stream = open(target, "wb")
        try:
            sink = _StreamSink(out_stream, source.rate, source.channels, subtype, source.frames, wav=fmt == "WAV")
            stream = _run(source, checked(sink.write), enhancer, steps, hop_times, on_block)
        finally:
            if handle is not None:
                handle.close()
    else:
        box = {}

        def render(f: BinaryIO) -> None:
            sink = _SoundFileSink(f, source.rate, source.channels, subtype, fmt)
            try:
                box["stream"] = _run(source, checked(sink.write), enhancer, steps, hop_times, on_block)
            finally:
                sink.close()

        write_file(output, render, force=force, inputs=[] if from_stdin else [noisy])
        stream = box["stream"]
    bar.close()
    # from a pipe the wall time is the input's pace: the processing time is what counts
    elapsed = stream.busy_s if from_stdin else time.perf_counter() - t0
    samples = stream.samples_out
    seconds = samples / source.rate
    limited = stream.limiter.limited if stream.limiter is not None else 0
    if limited:
        notes.append(
            f"limiter: {limited} of {samples * source.channels} samples turned down (input to the limiter peaked at "
            f"{stream.limiter.peak_in:.2f}, {20 * math.log10(max(stream.limiter.peak_in, 1e-12)):+.1f} dBFS); none is beyond full scale"
        )
    return EnhanceResult(
        output="standard output" if to_stdout else output,
        format=fmt,
        subtype=subtype,
        samples=samples,
        sample_rate=source.rate,
        channels=source.channels,
        seconds_audio=seconds,
        seconds_processing=elapsed,
        real_time_factor=elapsed / seconds if seconds else 0.0,
        hop_ms_median=1e3 * statistics.median(hop_times) if hop_times else None,
        hop_ms_p99=1e3 * _percentile(hop_times, 99) if hop_times else None,
        peak=peak[0],
        limited_samples=limited,
        notes=tuple(notes),
    )


def enhance_wave(
    wave: Tensor,
    enhancer: SpeechEnhancer,
    rate: int | None = None,
    subtype: str = "PCM_16",
    offline: bool = True,
    chunk_frames: int = 1,
) -> Tensor:
    """What :func:`enhance_file` writes for an input holding ``wave`` (``(N,)`` or ``(C, N)`` at
    ``rate``, the model's by default): the same pipeline (limiter included), then the samples as a
    ``subtype`` file holds them (converted to it and read back). ``(N,)`` or ``(C, N)`` ``float32``.

    For measuring quality on what a user gets (``soi demo``, ``soi evaluate``) without a file on disk."""
    from .data import decode_pcm, encode_pcm

    x = wave if wave.dim() == 2 else wave.unsqueeze(0)
    stream = EnhanceStream(enhancer, rate or enhancer.sample_rate, x.shape[0], OFFLINE_BLOCK_FRAMES if offline else chunk_frames)
    size = OFFLINE_BLOCK_FRAMES * enhancer.hop if offline else chunk_frames * enhancer.hop
    outs = [stream.push(x[:, i : i + size]) for i in range(0, x.shape[1], size)]
    outs.append(stream.finish())
    out = torch.cat(outs, dim=1).T.contiguous().numpy()
    written = decode_pcm(encode_pcm(out, subtype), subtype, x.shape[0])
    y = torch.from_numpy(written.T.copy())
    return y if wave.dim() == 2 else y[0]
