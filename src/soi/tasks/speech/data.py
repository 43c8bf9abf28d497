"""Audio IO, resampling, mixing and the speech-enhancement data sets.

* :func:`read_wav` / :func:`write_wav`: soundfile-based IO with clear errors; reading returns mono
  ``float32`` at the requested rate and notes what was converted (and warns about a file cut
  short); writing picks the format from the extension and goes through :mod:`soi.files` (atomic,
  never over the input, never replacing a device or a link).
* :func:`resample`: a Kaiser-windowed sinc resampler for any pair of integer rates (torch only);
  :class:`StreamingResampler` the same for a stream arriving in blocks.
* :func:`decode_pcm` / :func:`encode_pcm` / :func:`wav_header` / :func:`read_wav_header`: raw PCM and
  WAV streams on standard input and output (``soi enhance - -o -``).
* :class:`DNSFolderDataset`: the DNS Challenge layout (folders of clean speech and of noise), mixed
  on the fly at a random SNR, deterministic per index.
* :class:`PairedFolderDataset`: matching noisy / clean files; :class:`DefaultDataset` reads the set
  made by :func:`soi.tasks.speech.generate.generate_dataset`; :func:`open_split` opens one split of
  such a paired set.

Items are tuples ``(noisy, clean)`` of ``float32`` tensors of shape ``(N,)``.
"""

from __future__ import annotations

import io
import math
import os
import re
import stat
import warnings
from collections.abc import Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np
import torch
from torch import Tensor
from torch.utils.data import Dataset

from ...files import write_file

__all__ = [
    "AUDIO_EXTENSIONS",
    "AudioFileError",
    "AudioFileWarning",
    "read_wav",
    "read_segment",
    "write_wav",
    "audio_format",
    "audio_info",
    "check_finite",
    "OUTPUT_FORMATS",
    "StreamingResampler",
    "RAW_FORMATS",
    "decode_pcm",
    "encode_pcm",
    "wav_header",
    "read_wav_header",
    "audio_subtype",
    "writable_subtype",
    "resample",
    "downmix",
    "mix_at_snr",
    "list_audio_files",
    "DNSFolderDataset",
    "PairedFolderDataset",
    "DefaultDataset",
    "open_split",
    "noisy_clean",
]

AUDIO_EXTENSIONS = (".wav", ".flac", ".ogg", ".oga")


class AudioFileError(ValueError):
    """An audio file that exists but cannot be used (corrupt, empty, non-finite samples)."""


class AudioFileWarning(UserWarning):
    """An audio file that can be used but is not what its header says (cut short)."""


def _soundfile():
    try:
        import soundfile
    except ImportError as err:  # pragma: no cover - soundfile is in the audio extra
        raise ImportError("soi.audio needs the optional package 'soundfile': pip install 'soi[audio]'") from err
    return soundfile


# -- resampling ------------------------------------------------------------------------------------

_ZERO_CROSSINGS = 24  # per side of the sinc: ~100 dB stop band with the Kaiser window below
_ROLLOFF = 0.94  # cut-off as a fraction of the lower Nyquist frequency, leaving a transition band
_KAISER_BETA = 10.0
_CHUNK = 1 << 15  # output samples per vectorised block, bounds memory to CHUNK x taps
_MAX_KERNEL = 1 << 22  # largest polyphase kernel (up x taps) worth building


@lru_cache(maxsize=32)
def _resample_plan(orig_sr: int, new_sr: int) -> tuple[int, int, int, float, Tensor | None]:
    g = math.gcd(orig_sr, new_sr)
    up, down = new_sr // g, orig_sr // g
    # Cut-off in cycles per input sample; below both Nyquist frequencies.
    cutoff = 0.5 * _ROLLOFF * min(up, down) / down
    half = math.ceil(_ZERO_CROSSINGS / (2 * cutoff))
    # Output m = r + j*up sits at input time base_r + j*down + frac_r: for each residue r one fixed
    # filter slides with stride `down`, i.e. one strided convolution with `up` output channels.
    # Filter r starts base_r samples into a kernel of down + 2*half taps.
    if up * (down + 2 * half) > _MAX_KERNEL:
        return up, down, half, cutoff, None
    r = torch.arange(up, dtype=torch.int64)
    base = r * down // up
    taps = _sinc_weights(((r * down) % up).to(torch.float64) / up, half, cutoff)  # (up, 2*half)
    kernel = torch.zeros(up, down + 2 * half, dtype=torch.float64)
    cols = base[:, None] + torch.arange(1, 2 * half + 1)[None, :]
    kernel.scatter_(1, cols, taps)
    return up, down, half, cutoff, kernel.unsqueeze(1)


def _sinc_weights(frac: Tensor, half: int, cutoff: float) -> Tensor:
    """Filter taps ``(len(frac), 2*half)`` for output samples ``frac`` input samples past a tap,
    taps at offsets ``-half+1 .. half``."""
    offsets = torch.arange(-half + 1, half + 1, dtype=torch.float64)
    tau = frac[:, None] - offsets[None, :]
    arg = (tau / half).clamp(-1.0, 1.0)
    beta = torch.tensor(_KAISER_BETA, dtype=torch.float64)
    window = torch.special.i0(beta * torch.sqrt(1.0 - arg * arg)) / torch.special.i0(beta)
    return 2 * cutoff * torch.sinc(2 * cutoff * tau) * window


def resample(wave: Tensor, orig_sr: int, new_sr: int) -> Tensor:
    """Band-limited resampling of ``(..., N)`` from ``orig_sr`` to ``new_sr`` Hz.

    Each output sample at input time ``t = m * orig_sr / new_sr`` is a Kaiser-windowed sinc
    interpolation of the input (zero outside it), with the low-pass cut-off just below the lower of
    the two Nyquist frequencies, so downsampling does not alias. Works for any pair of integer rates
    (sample times are exact integer ratios). Computed in the input's precision (``float32`` or
    ``float64``); returns ``(..., ceil(N * new_sr / orig_sr))``.
    """
    if orig_sr <= 0 or new_sr <= 0:
        raise ValueError(f"resample: sample rates must be positive, got {orig_sr} and {new_sr}")
    if orig_sr == new_sr:
        return wave
    up, down, half, cutoff, kernel = _resample_plan(int(orig_sr), int(new_sr))
    n = wave.shape[-1]
    out_len = -(-n * up // down)
    lead = wave.shape[:-1]
    dtype = wave.dtype if wave.dtype == torch.float64 else torch.float32
    x = wave.reshape(-1, n).to(dtype)
    if kernel is not None:
        blocks = -(-out_len // up)
        x = torch.nn.functional.pad(x, (half, (blocks - 1) * down + down + 2 * half - n - half))
        out = torch.nn.functional.conv1d(x.unsqueeze(1), kernel.to(dtype), stride=down)  # (B, up, blocks)
        out = out.transpose(1, 2).reshape(x.shape[0], -1)[:, :out_len]
    else:
        # Rates so coprime that the polyphase kernel would not fit: gather taps per output sample.
        x = torch.nn.functional.pad(x, (half, half))
        offsets = torch.arange(-half + 1, half + 1, dtype=torch.int64)
        outs = []
        for start in range(0, out_len, _CHUNK):
            m = torch.arange(start, min(start + _CHUNK, out_len), dtype=torch.int64)
            idx = (m * down // up)[:, None] + offsets[None, :] + half
            weights = _sinc_weights(((m * down) % up).to(torch.float64) / up, half, cutoff).to(dtype)
            outs.append((x[:, idx] * weights).sum(-1))
        out = torch.cat(outs, dim=-1) if outs else x.new_zeros((x.shape[0], 0))
    out = out.reshape(*lead, out_len)
    return out.to(wave.dtype) if wave.is_floating_point() else out


class StreamingResampler:
    """:func:`resample` of a stream that arrives in blocks: ``push`` blocks of ``(C, n)`` samples at
    ``orig_sr``, get the output samples ready so far; ``finish`` returns the rest (the end of the
    input treated as zeros, as :func:`resample` does), ``ceil(N * new_sr / orig_sr)`` in all.

    Output sample ``m`` needs the input up to ``m * orig_sr / new_sr`` plus half the sinc's width
    (24 zero crossings: 1.5 ms at 16 kHz), so it is emitted as soon as that has arrived: the
    stream's only delay. The samples equal :func:`resample` of the whole signal up to float
    rounding, and depend only on the sequence of block sizes pushed (the same blocks give the same
    samples bit for bit). Memory is bounded by the block size.
    """

    def __init__(self, orig_sr: int, new_sr: int, channels: int = 1, dtype: torch.dtype = torch.float32) -> None:
        if orig_sr <= 0 or new_sr <= 0:
            raise ValueError(f"StreamingResampler: sample rates must be positive, got {orig_sr} and {new_sr}")
        self.orig_sr, self.new_sr, self.channels, self.dtype = int(orig_sr), int(new_sr), channels, dtype
        self.identity = self.orig_sr == self.new_sr
        self.emitted = 0  # output samples so far
        if self.identity:
            return
        self.up, self.down, self.half, self.cutoff, kernel = _resample_plan(self.orig_sr, self.new_sr)
        self.kernel = None if kernel is None else kernel.to(dtype)
        # The input padded with `half` zeros in front (resample's padding), from padded index `start`.
        self.start = 0
        self.buf = torch.zeros(channels, self.half, dtype=dtype)

    def _ready(self, extra_zeros: int = 0) -> int:
        """Output samples computable from the buffer (plus ``extra_zeros`` zeros), beyond those emitted."""
        have = self.start + self.buf.shape[1] + extra_zeros  # padded input samples known
        if self.kernel is not None:  # whole polyphase blocks: block b needs padded [b*down, b*down + down + 2*half)
            return max(0, (have - 2 * self.half) // self.down) * self.up - self.emitted
        # output m needs padded input up to m*down//up + 2*half (inclusive)
        m = (have - 2 * self.half) * self.up // self.down  # first m whose last tap is beyond `have`, roughly
        while m > 0 and (m - 1) * self.down // self.up + 2 * self.half >= have:
            m -= 1
        while m * self.down // self.up + 2 * self.half < have:
            m += 1
        return max(0, m - self.emitted)

    def _compute(self, count: int) -> Tensor:
        """The next ``count`` output samples (the buffer holds what they need)."""
        c = self.channels
        if count <= 0:
            return self.buf.new_zeros((c, 0))
        if self.kernel is not None:
            blocks = count // self.up
            x = self.buf[:, : blocks * self.down + 2 * self.half]
            out = torch.nn.functional.conv1d(x.unsqueeze(1), self.kernel, stride=self.down)  # (C, up, blocks)
            out = out.transpose(1, 2).reshape(c, blocks * self.up)
            self.buf = self.buf[:, blocks * self.down :]
            self.start += blocks * self.down
        else:
            offsets = torch.arange(1, 2 * self.half + 1, dtype=torch.int64)
            outs = []
            for first in range(self.emitted, self.emitted + count, _CHUNK):
                m = torch.arange(first, min(first + _CHUNK, self.emitted + count), dtype=torch.int64)
                idx = (m * self.down // self.up)[:, None] + offsets[None, :] - self.start
                weights = _sinc_weights(((m * self.down) % self.up).to(torch.float64) / self.up, self.half, self.cutoff).to(self.dtype)
                outs.append((self.buf[:, idx] * weights).sum(-1))
            out = torch.cat(outs, dim=-1)
            keep = (self.emitted + count) * self.down // self.up + 1  # the first padded sample still needed
            self.buf = self.buf[:, keep - self.start :]
            self.start = keep
        self.emitted += out.shape[1]
        return out

    def push(self, x: Tensor) -> Tensor:
        """Append ``(C, n)`` input samples; returns the ``(C, m)`` output samples now ready."""
        if self.identity:
            self.emitted += x.shape[1]
            return x
        self.buf = torch.cat([self.buf, x.to(self.dtype)], dim=1)
        return self._compute(self._ready())

    def finish(self, total_in: int) -> Tensor:
        """The remaining output samples once ``total_in`` input samples in all have been pushed."""
        if self.identity:
            return torch.zeros(self.channels, 0, dtype=self.dtype)
        total_out = -(-total_in * self.up // self.down)
        need = total_out - self.emitted
        if need <= 0:
            return torch.zeros(self.channels, 0, dtype=self.dtype)
        zeros = 0
        while self._ready(zeros) < need:
            zeros += self.down + 2 * self.half
        self.buf = torch.cat([self.buf, self.buf.new_zeros((self.channels, zeros))], dim=1)
        if self.kernel is not None:
            out = self._compute(-(-need // self.up) * self.up)
            self.emitted -= out.shape[1] - need
            return out[:, :need]
        return self._compute(need)


def downmix(wave: Tensor) -> Tensor:
    """``(N, C)`` frames x channels -> ``(N,)`` by averaging the channels."""
    return wave.mean(dim=-1) if wave.dim() == 2 else wave


# -- IO -------------------------------------------------------------------------------------------


def _open_info(path: Path):
    sf = _soundfile()
    if not path.exists():
        raise FileNotFoundError(f"{path}: no such file")
    st = path.stat()
    if stat.S_ISDIR(st.st_mode):
        raise IsADirectoryError(f"{path} is a folder; give an audio file")
    if not stat.S_ISREG(st.st_mode):
        # libsndfile seeks in its input: a pipe or a device would fail midway or hang
        raise AudioFileError(f"{path} is not a regular file (a pipe or a device); give an audio file")
    if st.st_size == 0:
        raise AudioFileError(f"{path}: the file is empty (0 bytes)")
    try:
        return sf.info(str(path))
    except RuntimeError as err:  # soundfile's LibsndfileError is a RuntimeError
        raise AudioFileError(f"{path}: not a readable audio file (corrupt or unsupported format: {err})") from err


# libsndfile's log of a WAV whose header promises more audio than the file holds.
_CUT_SHORT = re.compile(r"^data\s*:\s*(\d+)\s*\(should be (\d+)\)", re.MULTILINE)


def _warn_if_cut_short(path: Path, info) -> None:
    m = _CUT_SHORT.search(info.extra_info or "")
    if m and int(m.group(1)) > int(m.group(2)):
        declared, present = int(m.group(1)), int(m.group(2))
        # Processed, as sox and ffmpeg do: the samples there are good, and a cut copy is often all
        # there is; the warning says the result covers less than the header promised.
        warnings.warn(
            f"{path} is cut short: its header declares {declared} bytes of audio but the file holds {present} "
            f"({100 * present / declared:.0f}%); using the {info.frames} samples that are there",
            AudioFileWarning,
            stacklevel=3,
        )


def audio_subtype(path: str | os.PathLike) -> str:
    """The sample format of an audio file as soundfile names it (``PCM_16``, ``PCM_24``, ``FLOAT``, ...)."""
    return _open_info(Path(path)).subtype


OUTPUT_FORMATS = {".wav": "WAV", ".flac": "FLAC"}
"""The formats soi writes audio in, by extension (no extension: WAV). Both are lossless and hold
16/24-bit PCM (WAV also float), so an output never loses what the input had."""


def audio_format(path: str | os.PathLike) -> str:
    """The soundfile format that ``path``'s extension names (:data:`OUTPUT_FORMATS`: ``.wav`` ->
    ``WAV``, ``.flac`` -> ``FLAC``); no extension means WAV.

    Raises:
        ValueError: any other extension (``.ogg`` is lossy and 16-bit-only; ``.xyz`` unknown).
    """
    suffix = Path(path).suffix
    if not suffix:
        return "WAV"
    fmt = OUTPUT_FORMATS.get(suffix.lower())
    if fmt is None:
        raise ValueError(f"{path}: cannot tell an audio format from the extension {suffix!r}; use one of {', '.join(OUTPUT_FORMATS)}")
    return fmt


def audio_info(path: str | os.PathLike):
    """soundfile's ``info`` of an audio file to read, after the checks :func:`read_wav` makes (a
    regular, non-empty, readable file holding samples; a warning if it is cut short)."""
    path = Path(path)
    info = _open_info(path)
    if info.frames == 0:
        raise AudioFileError(f"{path}: the file holds no samples")
    _warn_if_cut_short(path, info)
    return info


def check_finite(block: np.ndarray, where: str, offset: int = 0) -> None:
    """Raise :class:`AudioFileError` naming the first non-finite sample of ``block`` (frames first),
    counted from ``offset``."""
    bad = ~np.isfinite(block)
    if bad.any():
        first = int(np.argwhere(bad)[0][0]) + offset
        raise AudioFileError(f"{where}: non-finite (NaN or infinite) samples, the first at sample {first}")


def read_segment(
    path: str | os.PathLike,
    start_seconds: float = 0.0,
    num_seconds: float | None = None,
    sample_rate: int | None = 16000,
) -> tuple[Tensor, int, list[str]]:
    """Read part of an audio file as mono ``float32``: see :func:`read_wav`.

    Only the requested span is decoded (long DNS noise files stay cheap). ``num_seconds=None`` reads
    to the end.
    """
    sf = _soundfile()
    path = Path(path)
    info = _open_info(path)
    if info.frames == 0:
        raise AudioFileError(f"{path}: the file holds no samples")
    _warn_if_cut_short(path, info)
    start = int(round(start_seconds * info.samplerate))
    stop = info.frames if num_seconds is None else min(info.frames, start + math.ceil(num_seconds * info.samplerate))
    try:
        data, sr = sf.read(str(path), start=start, stop=stop, dtype="float32", always_2d=True)
    except RuntimeError as err:
        raise AudioFileError(f"{path}: could not decode the audio ({err})") from err
    if data.size == 0 and num_seconds != 0:
        raise AudioFileError(f"{path}: the file holds no samples in the requested span")
    bad = ~np.isfinite(data)
    if bad.any():
        first = int(np.argwhere(bad)[0][0]) + start
        raise AudioFileError(f"{path}: non-finite (NaN or infinite) samples, the first at sample {first}")
    notes: list[str] = []
    wave = torch.from_numpy(data)
    if wave.shape[1] > 1:
        notes.append(f"downmixed {wave.shape[1]} channels to mono (channel mean)")
    wave = downmix(wave) if wave.shape[1] > 1 else wave[:, 0]
    if sample_rate is not None and sr != sample_rate:
        wave = resample(wave, sr, sample_rate)
        notes.append(f"resampled from {sr} Hz to {sample_rate} Hz")
        sr = sample_rate
    return wave.contiguous(), sr, notes


def read_wav(path: str | os.PathLike, sample_rate: int | None = 16000) -> tuple[Tensor, int, list[str]]:
    """Read an audio file (WAV, FLAC, OGG: whatever libsndfile reads) as a mono ``float32`` tensor.

    Args:
        path: the file.
        sample_rate: resample to this rate (``None``: keep the file's rate).

    Returns:
        ``(wave (N,), sample_rate, notes)``; ``notes`` lists the conversions made (downmixing,
        resampling), empty when the file was used as it is.

    Raises:
        FileNotFoundError: no such file.
        AudioFileError: (a ``ValueError``) the file is corrupt, empty or holds NaN/inf samples.
    """
    return read_segment(path, 0.0, None, sample_rate)


def writable_subtype(fmt: str, subtype: str | None) -> str:
    """The sample format :func:`write_wav` writes for ``subtype`` in format ``fmt``: ``subtype`` if
    the format has it; for float samples a format cannot hold (FLAC), ``PCM_24``, the closest;
    else ``PCM_16`` if the format has it, else the format's default."""
    sf = _soundfile()
    for candidate in (subtype, "PCM_24" if subtype in ("FLOAT", "DOUBLE") else None, "PCM_16"):
        if candidate is not None and sf.check_format(fmt, candidate):
            return candidate
    return sf.default_subtype(fmt)


def write_wav(
    path: str | os.PathLike,
    wave: Tensor | np.ndarray,
    sample_rate: int,
    overwrite: bool = False,
    subtype: str | None = None,
    inputs: Sequence[str | os.PathLike] = (),
) -> Path:
    """Write ``(N,)`` (mono) or ``(C, N)`` samples in ``[-1, 1]`` to an audio file.

    The format follows the extension (:func:`audio_format`: ``.wav`` or ``.flac``; none: WAV).
    ``subtype``: the sample format (``"PCM_16"``, ``"PCM_24"``, ``"FLOAT"``, ...; PCM clips values
    beyond ``[-1, 1]``); one the format cannot hold (FLAC has no ``FLOAT``), or ``None``, is
    replaced as :func:`writable_subtype` says (``PCM_16`` by default). Written with
    :func:`soi.files.write_file`: atomically, never over one of ``inputs``, never replacing a link
    or a device; missing parent folders are created.

    Raises:
        FileExistsError: ``path`` exists and ``overwrite`` is false.
        ValueError: non-finite samples, a bad shape or an unknown extension.
    """
    sf = _soundfile()
    path = Path(path)
    fmt = audio_format(path)
    data = wave.detach().cpu().numpy() if isinstance(wave, Tensor) else np.asarray(wave)
    if data.ndim not in (1, 2) or data.shape[-1] == 0:
        raise ValueError(f"write_wav: expected (N,) or (C, N) samples with N > 0, got shape {data.shape}")
    if not np.isfinite(data).all():
        raise ValueError(f"write_wav: refusing to write non-finite (NaN or infinite) samples to {path}")
    subtype = writable_subtype(fmt, subtype)
    data = (data.T if data.ndim == 2 else data).astype(np.float64 if subtype == "DOUBLE" else np.float32, copy=False)
    write_file(path, lambda f: sf.write(f, data, int(sample_rate), subtype=subtype, format=fmt), force=overwrite, inputs=inputs)
    return path


# -- raw PCM and WAV streams (standard input and output) -------------------------------------------

RAW_FORMATS = {"s16le": "PCM_16", "s24le": "PCM_24", "f32le": "FLOAT"}
"""Raw PCM sample formats (``--raw-format``, the names ``arecord``/``ffmpeg`` use) -> soundfile subtype."""

_SAMPLE_BYTES = {"PCM_16": 2, "PCM_24": 3, "PCM_32": 4, "FLOAT": 4, "DOUBLE": 8}


def sample_bytes(subtype: str) -> int:
    """Bytes per sample of a PCM/float subtype soi streams (``PCM_16``, ``PCM_24``, ``PCM_32``, ``FLOAT``, ``DOUBLE``)."""
    try:
        return _SAMPLE_BYTES[subtype]
    except KeyError:
        raise AudioFileError(f"cannot stream {subtype} samples; soi streams {', '.join(_SAMPLE_BYTES)}") from None


def decode_pcm(data: bytes, subtype: str, channels: int) -> np.ndarray:
    """Little-endian interleaved samples -> ``(n, channels)`` ``float32`` in ``[-1, 1)``, the values
    libsndfile reads from a file of that subtype (integers divided by ``2**(bits-1)``). A trailing
    partial frame is dropped."""
    width = sample_bytes(subtype)
    frame = width * channels
    data = memoryview(data)[: len(data) // frame * frame]
    if subtype == "PCM_16":
        x = np.frombuffer(data, "<i2").astype(np.float32) * np.float32(2.0**-15)
    elif subtype == "PCM_24":
        b = np.frombuffer(data, np.uint8).reshape(-1, 3).astype(np.int32)
        v = b[:, 0] | (b[:, 1] << 8) | (b[:, 2] << 16)
        x = (v - ((v & 0x800000) << 1)).astype(np.float32) * np.float32(2.0**-23)
    elif subtype == "PCM_32":
        x = np.frombuffer(data, "<i4").astype(np.float32) * np.float32(2.0**-31)
    elif subtype == "FLOAT":
        x = np.frombuffer(data, "<f4").astype(np.float32)
    else:
        x = np.frombuffer(data, "<f8").astype(np.float32)
    return x.reshape(-1, channels)


def encode_pcm(block: np.ndarray, subtype: str) -> bytes:
    """``(n, channels)`` float samples -> little-endian interleaved bytes of ``subtype``, converted by
    libsndfile exactly as it converts them for a file (so a stream and a file hold the same samples)."""
    sf = _soundfile()
    buffer = io.BytesIO()
    if block.shape[0]:
        sf.write(buffer, block, 8000, subtype=subtype, format="RAW", endian="LITTLE")
    return buffer.getvalue()


_UNKNOWN = 0xFFFFFFFF


def wav_header(rate: int, channels: int, subtype: str, frames: int | None = None) -> bytes:
    """A WAV header for a stream of ``frames`` frames, or of unknown length (``None``: the RIFF and
    data sizes are ``0xFFFFFFFF``, as ``ffmpeg`` and ``arecord`` write to a pipe; readers take the
    data up to the end of the stream)."""
    import struct

    width = sample_bytes(subtype)
    tag = 3 if subtype in ("FLOAT", "DOUBLE") else 1
    fmt = struct.pack("<HHIIHH", tag, channels, rate, rate * channels * width, channels * width, 8 * width)
    data = _UNKNOWN if frames is None else frames * channels * width
    riff = _UNKNOWN if frames is None else min(_UNKNOWN, 4 + 8 + len(fmt) + 8 + data)
    return b"RIFF" + struct.pack("<I", riff) + b"WAVE" + b"fmt " + struct.pack("<I", len(fmt)) + fmt + b"data" + struct.pack("<I", data)


def _read_exact(stream, n: int) -> bytes:
    data = stream.read(n)
    return data if data is not None else b""


def read_wav_header(stream, where: str = "standard input") -> tuple[int, int, str, int | None]:
    """Read a WAV header from a (non-seekable) binary stream, up to the start of its samples.

    Returns ``(rate, channels, subtype, data_bytes)``; ``data_bytes`` is ``None`` when the header
    does not know the length (``0`` or ``0xFFFFFFFF``, as a pipe writer leaves it).

    Raises:
        AudioFileError: not a WAV stream, or one whose samples soi cannot stream.
    """
    import struct

    head = _read_exact(stream, 12)
    if len(head) < 12 or head[:4] != b"RIFF" or head[8:12] != b"WAVE":
        raise AudioFileError(f"{where} is not a WAV stream (no RIFF/WAVE header); for raw PCM give --raw-format")
    fmt = None
    while True:
        chunk = _read_exact(stream, 8)
        if len(chunk) < 8:
            raise AudioFileError(f"{where}: the WAV stream ends before its data chunk")
        name, size = chunk[:4], struct.unpack("<I", chunk[4:])[0]
        if name == b"data":
            break
        body = _read_exact(stream, size + (size & 1))
        if name == b"fmt ":
            if len(body) < 16:
                raise AudioFileError(f"{where}: the WAV stream's fmt chunk is cut short")
            tag, channels, rate, _, _, bits = struct.unpack("<HHIIHH", body[:16])
            if tag == 0xFFFE and len(body) >= 26:  # WAVE_FORMAT_EXTENSIBLE: the sub-format's tag
                tag = struct.unpack("<H", body[24:26])[0]
            fmt = (tag, channels, rate, bits)
    if fmt is None:
        raise AudioFileError(f"{where}: the WAV stream has no fmt chunk before its data")
    tag, channels, rate, bits = fmt
    subtype = {(1, 16): "PCM_16", (1, 24): "PCM_24", (1, 32): "PCM_32", (3, 32): "FLOAT", (3, 64): "DOUBLE"}.get((tag, bits))
    if subtype is None or channels < 1 or rate < 1:
        raise AudioFileError(
            f"{where}: WAV with format tag {tag}, {bits} bits, {channels} channel(s) at {rate} Hz; soi streams "
            "16/24/32-bit PCM and 32/64-bit float"
        )
    return rate, channels, subtype, None if size in (0, _UNKNOWN) else size


def list_audio_files(folder: str | os.PathLike, extensions: Sequence[str] = AUDIO_EXTENSIONS) -> list[Path]:
    """Audio files under ``folder`` (recursive), sorted, so that an index names the same file everywhere."""
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"{folder}: no such folder")
    exts = tuple(e.lower() for e in extensions)
    return sorted(p for p in folder.rglob("*") if p.suffix.lower() in exts and p.is_file())


# -- mixing ---------------------------------------------------------------------------------------


def mix_at_snr(clean: Tensor, noise: Tensor, snr_db: float, peak: float = 0.99, eps: float = 1e-10) -> tuple[Tensor, Tensor]:
    """Mix ``noise`` into ``clean`` (both ``(N,)``) at ``snr_db``; returns ``(noisy, clean)``.

    The noise is scaled so that ``10*log10(P_clean / P_noise) = snr_db``. If the mixture would
    clip beyond ``peak``, both signals are scaled down together, so the pair stays consistent.
    """
    if clean.shape != noise.shape:
        raise ValueError(f"mix_at_snr: clean {tuple(clean.shape)} and noise {tuple(noise.shape)} differ in shape")
    p_clean = clean.double().square().mean()
    p_noise = noise.double().square().mean()
    gain = torch.sqrt(p_clean / (p_noise * 10 ** (snr_db / 10) + eps)).to(clean.dtype)
    noisy = clean + gain * noise
    top = noisy.abs().max()
    if top > peak:
        scale = peak / top
        noisy, clean = noisy * scale, clean * scale
    return noisy, clean


def _fit(wave: Tensor, length: int, rng: np.random.Generator, loop: bool) -> Tensor:
    """Exactly ``length`` samples of ``wave``: a random window if longer; if shorter, tiled from a
    random phase (``loop``) or zero padded at a random position."""
    n = wave.shape[0]
    if n >= length:
        start = int(rng.integers(0, n - length + 1))
        return wave[start : start + length]
    if loop:
        reps = -(-(length + n) // n)
        start = int(rng.integers(0, n))
        return wave.repeat(reps)[start : start + length]
    out = wave.new_zeros(length)
    start = int(rng.integers(0, length - n + 1))
    out[start : start + n] = wave
    return out


# -- data sets ------------------------------------------------------------------------------------


class DNSFolderDataset(Dataset):
    """Noisy/clean pairs mixed on the fly from the DNS Challenge layout.

    Args:
        clean_dir: folder (searched recursively) of clean speech files.
        noise_dir: folder (searched recursively) of noise files.
        segment_seconds: length of every item.
        snr_range_db: the SNR is drawn uniformly from this range.
        sample_rate: files at other rates are resampled; multichannel files are downmixed.
        seed: with the index, fixes everything random about an item (file choice, offsets, SNR).
        length: items per epoch (default: one per clean file).

    Item ``i`` uses clean file ``i mod len(clean_files)`` (so an epoch covers every file when
    ``length`` is left at its default), a random window of it (zero padded at a random position if
    the file is shorter), a random noise file looped from a random phase, and a random SNR.
    Returns ``(noisy, clean)``, each ``float32`` ``(segment_seconds * sample_rate,)``.
    """

    def __init__(
        self,
        clean_dir: str | os.PathLike,
        noise_dir: str | os.PathLike,
        segment_seconds: float = 4.0,
        snr_range_db: tuple[float, float] = (-5.0, 20.0),
        sample_rate: int = 16000,
        seed: int = 0,
        length: int | None = None,
    ) -> None:
        self.clean_files = list_audio_files(clean_dir)
        self.noise_files = list_audio_files(noise_dir)
        for name, files, folder in (("clean", self.clean_files, clean_dir), ("noise", self.noise_files, noise_dir)):
            if not files:
                raise FileNotFoundError(f"DNSFolderDataset: no {name} audio files ({', '.join(AUDIO_EXTENSIONS)}) under {folder}")
        if segment_seconds <= 0:
            raise ValueError(f"segment_seconds must be positive, got {segment_seconds}")
        lo, hi = snr_range_db
        if lo > hi:
            raise ValueError(f"snr_range_db must be (low, high), got {snr_range_db}")
        self.segment_seconds = float(segment_seconds)
        self.segment = int(round(segment_seconds * sample_rate))
        self.snr_range_db = (float(lo), float(hi))
        self.sample_rate = sample_rate
        self.seed = seed
        self.length = len(self.clean_files) if length is None else int(length)

    def __len__(self) -> int:
        return self.length

    def _read_window(self, path: Path, rng: np.random.Generator, loop: bool) -> Tensor:
        info = _open_info(path)
        duration = info.frames / info.samplerate
        if duration > self.segment_seconds + 0.1:
            # Decode only a random span (plus a margin for the resampler's edges), not the file.
            start = float(rng.uniform(0.0, duration - self.segment_seconds - 0.05))
            wave, _, _ = read_segment(path, start, self.segment_seconds + 0.05, self.sample_rate)
        else:
            wave, _, _ = read_wav(path, self.sample_rate)
        return _fit(wave, self.segment, rng, loop)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        if not 0 <= index < self.length:
            raise IndexError(f"DNSFolderDataset: index {index} out of range for {self.length} items")
        rng = np.random.default_rng([self.seed, index])
        clean = self._read_window(self.clean_files[index % len(self.clean_files)], rng, loop=False)
        noise = self._read_window(self.noise_files[int(rng.integers(len(self.noise_files)))], rng, loop=True)
        snr = float(rng.uniform(*self.snr_range_db))
        noisy, clean = mix_at_snr(clean, noise, snr)
        return noisy, clean


_FILEID = re.compile(r"fileid_(\d+)")


def _pair_key(path: Path, root: Path, by_fileid: bool) -> str:
    if by_fileid:
        return _FILEID.findall(path.name)[-1]
    return path.relative_to(root).as_posix()


class PairedFolderDataset(Dataset):
    """Matching noisy / clean files, paired by file name (relative path).

    When no names match but every file carries a DNS ``fileid_<n>`` tag (the DNS test sets name
    noisy and clean files differently), the pairs are matched by that tag.

    Args:
        noisy_dir, clean_dir: the two folders (searched recursively).
        sample_rate: files at other rates are resampled; multichannel files are downmixed.
        segment_seconds: ``None`` returns whole files; otherwise a window of this length, at a
            position fixed by ``seed`` and the index (zero padded if the file is shorter).
        seed: see ``segment_seconds``.

    Returns ``(noisy, clean)``, each ``float32`` ``(N,)``.

    Raises:
        ValueError: listing the files without a partner.
    """

    def __init__(
        self,
        noisy_dir: str | os.PathLike,
        clean_dir: str | os.PathLike,
        sample_rate: int = 16000,
        segment_seconds: float | None = None,
        seed: int = 0,
    ) -> None:
        noisy_root, clean_root = Path(noisy_dir), Path(clean_dir)
        noisy, clean = list_audio_files(noisy_root), list_audio_files(clean_root)
        if not noisy:
            raise FileNotFoundError(f"PairedFolderDataset: no audio files under {noisy_root}")
        by_fileid = False
        noisy_keys = {_pair_key(p, noisy_root, False): p for p in noisy}
        clean_keys = {_pair_key(p, clean_root, False): p for p in clean}
        if not noisy_keys.keys() & clean_keys.keys() and all(_FILEID.search(p.name) for p in noisy + clean):
            by_fileid = True
            noisy_keys = {_pair_key(p, noisy_root, True): p for p in noisy}
            clean_keys = {_pair_key(p, clean_root, True): p for p in clean}
        only_noisy = sorted(noisy_keys.keys() - clean_keys.keys())
        only_clean = sorted(clean_keys.keys() - noisy_keys.keys())
        if only_noisy or only_clean:

            def listing(keys: list[str], table: dict[str, Path]) -> str:
                shown = ", ".join(str(table[k]) for k in keys[:10])
                return shown + (f" and {len(keys) - 10} more" if len(keys) > 10 else "")

            parts = []
            if only_noisy:
                parts.append(f"{len(only_noisy)} noisy file(s) without a clean partner: {listing(only_noisy, noisy_keys)}")
            if only_clean:
                parts.append(f"{len(only_clean)} clean file(s) without a noisy partner: {listing(only_clean, clean_keys)}")
            how = "DNS fileid tag" if by_fileid else "file name"
            raise ValueError(f"PairedFolderDataset: files must pair up by {how}; " + "; ".join(parts))
        self.pairs = [(noisy_keys[k], clean_keys[k]) for k in sorted(noisy_keys)]
        self.sample_rate = sample_rate
        self.segment = None if segment_seconds is None else int(round(segment_seconds * sample_rate))
        self.seed = seed

    def __len__(self) -> int:
        return len(self.pairs)

    def __getitem__(self, index: int) -> tuple[Tensor, Tensor]:
        noisy_path, clean_path = self.pairs[index]
        noisy, _, _ = read_wav(noisy_path, self.sample_rate)
        clean, _, _ = read_wav(clean_path, self.sample_rate)
        if noisy.shape != clean.shape:
            raise AudioFileError(
                f"PairedFolderDataset: {noisy_path} has {noisy.shape[0]} samples but {clean_path} has "
                f"{clean.shape[0]} (at {self.sample_rate} Hz); a pair must have the same length"
            )
        if self.segment is not None:
            # Identically seeded generators draw the same window for both halves of the pair.
            noisy = _fit(noisy, self.segment, np.random.default_rng([self.seed, index]), loop=False)
            clean = _fit(clean, self.segment, np.random.default_rng([self.seed, index]), loop=False)
        return noisy, clean


class DefaultDataset(PairedFolderDataset):
    """The split ``"train"``, ``"valid"`` or ``"test"`` of a set written by
    :func:`soi.tasks.speech.generate.generate_dataset` (``root/<split>/{noisy,clean}/*.wav``)."""

    SPLITS = ("train", "valid", "test")

    def __init__(self, root: str | os.PathLike, split: str, segment_seconds: float | None = None, seed: int = 0) -> None:
        if split not in self.SPLITS:
            raise ValueError(f"DefaultDataset: split must be one of {self.SPLITS}, got {split!r}")
        root = Path(root)
        if not (root / "manifest.json").is_file():
            raise FileNotFoundError(
                f"DefaultDataset: no complete data set at {root} (manifest.json missing); "
                f"make one with: soi generate {root}"
            )
        super().__init__(root / split / "noisy", root / split / "clean", segment_seconds=segment_seconds, seed=seed)
        self.root = root
        self.split = split


def open_split(root: str | os.PathLike, split: str) -> PairedFolderDataset:
    """The ``split`` of a paired data set under ``root`` (``root/split/{noisy,clean}``)."""
    folder = Path(root) / split
    if not (folder / "noisy").is_dir() or not (folder / "clean").is_dir():
        raise FileNotFoundError(f"{folder} must contain noisy/ and clean/ folders of matching WAV files")
    return PairedFolderDataset(folder / "noisy", folder / "clean")


def noisy_clean(item: Sequence[Tensor] | dict[str, Tensor]) -> tuple[Tensor, Tensor]:
    """The ``(noisy, clean)`` pair of a data set item: this module's tuples, or a dict with those
    keys (user data sets)."""
    if isinstance(item, dict):
        return item["noisy"], item["clean"]
    return item[0], item[1]
