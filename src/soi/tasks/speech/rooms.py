"""Simulated rooms for the default data set: shoebox room impulse responses from
``pyroomacoustics`` (image-source method; absorption and reflection order from the target RT60 by
Sabine's formula, :func:`pyroomacoustics.inverse_sabine`).

The training target of a reverberant utterance is the speech through the **direct path and the
early reflections** (the first :data:`EARLY_MS` = 50 ms of the impulse response after the direct
path), as in the DNS Challenge: early reflections fuse with the direct sound and help
intelligibility, the late tail is what listeners hear as reverberation. A mask-based causal
enhancer can suppress the late tail but cannot undo the early colouration without distortion, so a
dry target would ask for the impossible and the full reverberant speech would teach it to keep
the reverb.

Alignment: both the reverberant speech and the target are cut so that the direct path lands on
lag 0, i.e. output sample ``t`` carries the direct sound of input sample ``t`` (fractional-delay
filter ringing aside), and both keep the input's length (the tail past the end is cut).
"""

from __future__ import annotations

import numpy as np

__all__ = ["EARLY_MS", "RT60_RANGE", "rooms_available", "draw_room", "impulse_response", "reverberate"]

EARLY_MS = 50.0
RT60_RANGE = (0.2, 0.8)
_FADE_MS = 5.0  # the early part ends with a short half-cosine fade instead of a step


def rooms_available() -> str | None:
    """``None`` when rooms can be simulated here, else what is missing."""
    try:
        import pyroomacoustics  # noqa: F401
    except ImportError:
        return "pyroomacoustics (pip install pyroomacoustics, or soi[audio])"
    return None


def draw_room(rng: np.random.Generator) -> dict:
    """A random shoebox room with a talker and a microphone in it, as JSON-able values (metres,
    seconds)."""
    dims = [float(rng.uniform(3, 10)), float(rng.uniform(3, 8)), float(rng.uniform(2.4, 4))]
    rt60 = float(rng.uniform(*RT60_RANGE))
    margin = 0.5
    for _ in range(100):
        source = [float(rng.uniform(margin, d - margin)) for d in dims[:2]] + [float(rng.uniform(1.2, 1.9))]
        mic = [float(rng.uniform(margin, d - margin)) for d in dims[:2]] + [float(rng.uniform(0.7, 1.6))]
        distance = float(np.linalg.norm(np.subtract(source, mic)))
        if 0.5 <= distance <= 5.0:
            break
    return {
        "dims_m": [round(d, 3) for d in dims],
        "rt60_s": round(rt60, 3),
        "source_m": [round(v, 3) for v in source],
        "mic_m": [round(v, 3) for v in mic],
        "distance_m": round(distance, 3),
    }


def impulse_response(room: dict, sample_rate: int = 16000) -> np.ndarray:
    """The impulse response (float64) of ``room`` (from :func:`draw_room`), direct path included
    at its propagation delay."""
    import pyroomacoustics as pra

    absorption, max_order = pra.inverse_sabine(room["rt60_s"], room["dims_m"])
    shoebox = pra.ShoeBox(room["dims_m"], fs=sample_rate, materials=pra.Material(absorption), max_order=max_order)
    shoebox.add_source(room["source_m"])
    shoebox.add_microphone(room["mic_m"])
    shoebox.compute_rir()
    return np.asarray(shoebox.rir[0][0], dtype=np.float64)


def _convolve(x: np.ndarray, h: np.ndarray, onset: int) -> np.ndarray:
    n = x.size + h.size - 1
    size = 1 << (n - 1).bit_length()
    y = np.fft.irfft(np.fft.rfft(x, size) * np.fft.rfft(h, size), size)[:n]
    return y[onset : onset + x.size]


def reverberate(x: np.ndarray, rir: np.ndarray, sample_rate: int = 16000, early_ms: float = EARLY_MS) -> tuple[np.ndarray, np.ndarray]:
    """``(reverberant, early)``: ``x`` through the whole ``rir`` and through its direct path and
    first ``early_ms``, both of ``x``'s length with the direct path at lag 0 (see the module
    docstring)."""
    x = np.asarray(x, dtype=np.float64)
    rir = np.asarray(rir, dtype=np.float64)
    onset = int(np.argmax(np.abs(rir)))  # the direct path: the shortest image, so the strongest
    end = min(rir.size, onset + int(round(early_ms * sample_rate / 1000)))
    fade = min(end, int(round(_FADE_MS * sample_rate / 1000)))
    early = rir[:end].copy()
    if fade:
        early[end - fade :] *= 0.5 * (1 + np.cos(np.linspace(0, np.pi, fade)))
    return _convolve(x, rir, onset), _convolve(x, early, onset)
