"""``soi enhance``: stream a noisy audio file hop by hop through a trained model.

    soi enhance noisy.wav -o enhanced.wav [--checkpoint model.pt] [--pattern "S-CC 2"] [--offline] [--force]

Streaming is the default and reports the real-time factor and the per-hop latency; ``--offline``
runs the whole file at once and gives the same samples. The written file has the input's length and
is aligned with it sample for sample; its format follows the output's extension and its sample
format is the input's (24-bit stays 24-bit, float stays float) where that format has it.

Everything about the output is checked before the work starts (:func:`soi.files.check_output_file`:
not a folder, not the input, ``force`` for an existing file, a folder soi can write in, a known
extension), so a mistake is reported at once, not after a long file has been processed.
"""

from __future__ import annotations

import statistics
import time
from dataclasses import dataclass
from pathlib import Path

import torch

from ...files import check_output_file
from ...progress import progress_bar
from .masker import SpeechEnhancer, load_checkpoint

__all__ = ["EnhanceResult", "enhance_file"]


@dataclass(frozen=True)
class EnhanceResult:
    output: Path
    format: str
    subtype: str
    samples: int
    sample_rate: int
    seconds_audio: float
    seconds_processing: float
    real_time_factor: float
    hop_ms_median: float | None
    hop_ms_p99: float | None
    notes: tuple[str, ...]


def _percentile(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, max(0, round(q / 100 * (len(ordered) - 1))))]


def enhance_file(
    noisy: str | Path,
    output: str | Path,
    enhancer: SpeechEnhancer | None = None,
    offline: bool = False,
    force: bool = False,
    chunk_frames: int = 1,
    progress: bool = False,
) -> EnhanceResult:
    """Enhance ``noisy`` into ``output`` (see the module docstring). Refuses to overwrite an existing
    output unless ``force``, and never writes over the input file. ``progress`` draws a bar of the
    audio streamed on a terminal (:func:`soi.progress.progress_bar`)."""
    from .data import audio_format, audio_subtype, read_wav, writable_subtype, write_wav

    if chunk_frames < 1:
        raise ValueError(f"enhance_file: chunk_frames must be >= 1, got {chunk_frames}")
    noisy = Path(noisy)
    subtype = audio_subtype(noisy)
    check_output_file(output, force=force, inputs=[noisy])  # before Path(): "" is not "."
    output = Path(output)
    fmt = audio_format(output)
    if enhancer is None:
        enhancer, _ = load_checkpoint()
    wave, rate, notes = read_wav(noisy, sample_rate=enhancer.sample_rate)
    if wave.shape[-1] < enhancer.n_fft:
        raise ValueError(
            f"{noisy} is too short: {wave.shape[-1]} samples at {rate} Hz; at least one STFT window "
            f"({enhancer.n_fft} samples, {1000 * enhancer.n_fft / enhancer.sample_rate:.0f} ms) is needed"
        )
    enhancer = enhancer.eval()
    hop_times: list[float] = []
    t0 = time.perf_counter()
    seconds = wave.shape[-1] / enhancer.sample_rate
    with torch.no_grad():
        if offline:
            out = enhancer(wave.unsqueeze(0))[0]
        else:
            bar = progress_bar(round(seconds, 2), desc=f"enhance {noisy.name}", unit="s", enabled=progress, leave=False)
            out = enhancer.enhance_streaming(wave, chunk_frames, hop_times, on_chunk=lambda n: bar.update(n / enhancer.sample_rate))
            bar.close()
    elapsed = time.perf_counter() - t0
    write_wav(output, out, enhancer.sample_rate, overwrite=force, subtype=subtype, inputs=[noisy])
    return EnhanceResult(
        output=output,
        format=fmt,
        subtype=writable_subtype(fmt, subtype),
        samples=wave.shape[-1],
        sample_rate=enhancer.sample_rate,
        seconds_audio=seconds,
        seconds_processing=elapsed,
        real_time_factor=elapsed / seconds,
        hop_ms_median=1e3 * statistics.median(hop_times) if hop_times else None,
        hop_ms_p99=1e3 * _percentile(hop_times, 99) if hop_times else None,
        notes=tuple(notes),
    )

