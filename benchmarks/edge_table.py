"""The edge targets of a speech model side by side: ONNX Runtime, LiteRT and TensorFlow Lite Micro,
each in float32 and int8 (post-training static quantization, :mod:`soi.deploy.quantize`).

    pip install --pre -e '.[edge]'
    python3 benchmarks/edge_table.py [--data /work/data/speech-v2] [--files 40] [--tflm-files 8]

Two models, STMC, one STFT frame per step:

* the shipped medium model (``speech_medium_stmc.pt``): SI-SNRi on the real-voice test split (the
  first ``--files`` files, as the peer table: ``benchmarks/speech_peers.py``) of every target,
  and its difference from PyTorch float;
* the small U-Net (``unet_small.json``, random weights): sizes and times only.

What runs on the target is the U-Net alone; the power-law compression of the input and the
complex-mask multiply stay on the host in float (the model's own modules, PyTorch), for every
target alike. int8 is calibrated on ``--calibration-frames`` consecutive frames of the *train*
split (the default data). Parity: the largest difference of the target's mask from PyTorch's over
400 frames of a test file, relative to the largest mask value; for int8 also the output SNR
against float. Times: the median per step over blocks interleaved across the targets, one thread,
in one run (the machine is shared: compare within the run). TFLM runs its reference kernels
(portable C, no SIMD): its times say how much work a step is for a plain core, not how fast a
microcontroller with CMSIS-NN runs it. SI-SNRi is computed without ``soi enhance``'s limiter and
16-bit output (the same pipeline for every target), so it is not the peer table's number.

Writes ``benchmarks/results/edge.{json,md}``; exports are cached under ``--work``.
"""

from __future__ import annotations

import argparse
import json
import os
import platform
import statistics
import time
from collections.abc import Callable
from importlib.resources import files as resource_files
from pathlib import Path
from typing import Any

import numpy as np
import torch

from soi.deploy import OnnxStreamer, export_onnx
from soi.deploy.edge_runtime import LiteRTStreamer, TflmStreamer, tflm_arena_bytes
from soi.deploy.litert import export_litert
from soi.deploy.manifest import Manifest
from soi.deploy.quantize import quantize_litert, quantize_onnx
from soi.models.unet import UNet, UNetConfig
from soi.tasks.speech.data import noisy_clean, open_split
from soi.tasks.speech.masker import load_checkpoint
from soi.tasks.speech.metrics import si_snr_improvement
from soi.tasks.speech.stft import enhance_offline, stft

ROOT = Path(__file__).resolve().parents[1]
TARGETS = ["ORT float", "ORT int8", "LiteRT float", "LiteRT int8", "TFLM float", "TFLM int8"]


def log(msg: str) -> None:
    print(f"[{time.strftime('%H:%M:%S')}] {msg}", flush=True)


def exports(unet: torch.nn.Module, work: Path, calibration: list[np.ndarray]) -> dict[str, Path]:
    """The six exports of ``unet`` (made once, kept under ``work``)."""
    shape = (1, 2, 1, unet.config.freq_bins)
    dirs = {t: work / t.replace(" ", "_") for t in TARGETS}
    dirs["LiteRT micro float"] = work / "LiteRT_micro_float"
    steps: list[tuple[str, Callable[[], Any]]] = [
        ("ORT float", lambda: export_onnx(unet, dirs["ORT float"], shape)),
        ("ORT int8", lambda: quantize_onnx(dirs["ORT float"], dirs["ORT int8"], calibration)),
        ("LiteRT float", lambda: export_litert(unet, dirs["LiteRT float"], shape)),
        ("LiteRT int8", lambda: quantize_litert(dirs["LiteRT float"], dirs["LiteRT int8"], calibration)),
        ("TFLM float", lambda: export_litert(unet, dirs["TFLM float"], shape, target="micro")),
        ("TFLM int8", lambda: quantize_litert(dirs["TFLM float"], dirs["TFLM int8"], calibration)),
    ]
    for name, make in steps:
        if not (dirs[name] / "manifest.json").is_file():
            t = time.perf_counter()
            make()
            log(f"  exported {name} -> {dirs[name]} ({time.perf_counter() - t:.0f} s)")
    return dirs


def open_stream(target: str, directory: Path):
    if target.startswith("ORT"):
        return OnnxStreamer(directory)
    if target.startswith("LiteRT"):
        return LiteRTStreamer(directory)
    return TflmStreamer(directory)


def stream_frames(stream, frames: torch.Tensor) -> torch.Tensor:
    """``(1, 2, T, F)`` frames through a streamer, one per step -> ``(1, 2, T, F)``."""
    stream.reset()
    ys = [stream.step(frames[:, :, t : t + 1].numpy()) for t in range(frames.shape[2])]
    return torch.from_numpy(np.concatenate(ys, axis=2))


def sizes(directory: Path, target: str) -> dict[str, Any]:
    man = Manifest.read(directory)
    out: dict[str, Any] = {"model_bytes": sum((directory / g.file).stat().st_size for g in man.graphs)}
    q = man.metadata.get("quantization")
    out["state_bytes"] = q["state_bytes_int8_held"] if q else man.state_bytes
    out["state_int8"] = q["state_int8"] if q else 0
    out["state_tensors"] = len(man.state)
    if target.startswith("TFLM"):
        out["arena_bytes"] = max(tflm_arena_bytes((directory / g.file).read_bytes()) for g in man.graphs)
    return out


def interleaved_times(streams: dict[str, Any], shape: tuple[int, ...], rounds: int, frames: int) -> dict[str, float]:
    """Median ms per step of each stream, blocks of ``frames`` steps interleaved (order rotating)
    after ``frames`` untimed steps per block."""
    rng = np.random.default_rng(0)
    x = (0.3 * rng.standard_normal((frames, *shape))).astype(np.float32)
    times: dict[str, list[float]] = {k: [] for k in streams}
    names = list(streams)
    for r in range(rounds):
        for k in names[r % len(names) :] + names[: r % len(names)]:
            s = streams[k]
            for f in range(frames):
                s.step(x[f])
            t = time.perf_counter()
            for f in range(frames):
                s.step(x[f])
            times[k].append((time.perf_counter() - t) / frames * 1e3)
    return {k: statistics.median(v) for k, v in times.items()}


def calibration_frames(data: Path, unet_input: Callable[[torch.Tensor], torch.Tensor], count: int) -> list[np.ndarray]:
    """``count`` consecutive compressed STFT frames of the train split's noisy files (one stream)."""
    items = open_split(data, "train")
    out: list[np.ndarray] = []
    for i in range(len(items)):
        noisy, _ = noisy_clean(items[i])
        c = unet_input(stft(noisy[None].float()))
        out += [c[:, :, t : t + 1].numpy() for t in range(c.shape[2])]
        if len(out) >= count:
            return out[:count]
    return out


def parity(ref: torch.Tensor, y: torch.Tensor) -> dict[str, float]:
    err = float((y - ref).abs().max())
    return {"max_rel": err / float(ref.abs().max()), "snr_db": float(10 * torch.log10(ref.square().sum() / (y - ref).square().sum().clamp_min(1e-30)))}


def machine() -> dict[str, Any]:
    import ai_edge_litert
    import onnxruntime

    cpu = next((ln.split(":", 1)[1].strip() for ln in Path("/proc/cpuinfo").read_text().splitlines() if ln.startswith("model name")), platform.processor())
    return {"cpu": cpu, "cores": os.cpu_count(), "torch": torch.__version__, "onnxruntime": onnxruntime.__version__,
            "ai_edge_litert": getattr(ai_edge_litert, "__version__", "?"), "threads": 1, "load_1min": os.getloadavg()[0]}  # fmt: skip


def run_model(name: str, unet: torch.nn.Module, host: tuple | None, args, work: Path, calib: list[np.ndarray], test_pairs) -> dict[str, Any]:
    log(f"{name}: exports")
    dirs = exports(unet, work / name, calib)
    streams = {t: open_stream(t, dirs[t]) for t in TARGETS}
    shape = (1, 2, 1, unet.config.freq_bins)
    result: dict[str, Any] = {"targets": {t: sizes(dirs[t], t) for t in TARGETS}}
    for t in TARGETS:
        s = streams[t]
        result["targets"][t]["host_conversions"] = sum(len(v) for v in getattr(s, "conversions", {}).values())

    # parity over 400 frames: a test file's compressed frames (the small model: its calibration frames)
    if host is not None:
        compress, _ = host
        frames = compress(stft(test_pairs[0][0][None]))[:, :, :400]
    else:
        frames = torch.from_numpy(np.concatenate(calib[:400], axis=2))
    with torch.no_grad():
        ref = unet(frames)
    outs = {t: stream_frames(streams[t], frames[:, :, : (60 if t.startswith("TFLM") else 400)]) for t in TARGETS}
    for t in TARGETS:
        n = outs[t].shape[2]
        result["targets"][t]["vs_pytorch"] = parity(ref[:, :, :n], outs[t])
        result["targets"][t]["parity_frames"] = n
        if "int8" in t:
            flo = outs[t.replace("int8", "float")]
            result["targets"][t]["vs_float"] = parity(flo[:, :, :n], outs[t][:, :, : flo.shape[2]])
    log(f"{name}: parity done")

    log(f"{name}: timing")
    fast = {t: s for t, s in streams.items() if not t.startswith("TFLM")}
    times = interleaved_times(fast, shape, args.rounds, 10)
    times.update(interleaved_times({t: streams[t] for t in TARGETS if t.startswith("TFLM")}, shape, max(3, args.rounds // 10), 3))
    for t, ms in times.items():
        result["targets"][t]["step_ms"] = ms

    if host is not None:
        compress, combine = host
        rows: dict[str, list[float]] = {"PyTorch float": [], **{t: [] for t in TARGETS}}
        for i, (noisy, clean) in enumerate(test_pairs):
            def through(stream):
                def fn(spec: torch.Tensor) -> torch.Tensor:
                    m = stream_frames(stream, compress(spec))
                    return combine(spec, m)

                return fn

            with torch.no_grad():
                y = enhance_offline(noisy[None], lambda spec: combine(spec, unet(compress(spec))))
            rows["PyTorch float"].append(float(si_snr_improvement(y, noisy[None], clean[None])[0]))
            for t in TARGETS:
                if t.startswith("TFLM") and i >= args.tflm_files:
                    continue
                y = enhance_offline(noisy[None], through(streams[t]))
                rows[t].append(float(si_snr_improvement(y, noisy[None], clean[None])[0]))
            if i % 10 == 9:
                log(f"{name}: SI-SNRi {i + 1}/{len(test_pairs)} files")
        result["si_snri_db"] = {k: statistics.fmean(v) for k, v in rows.items()}
        result["si_snri_files"] = {k: len(v) for k, v in rows.items()}
        # the float model on the TFLM subset, so TFLM rows compare with the same files
        result["si_snri_db_tflm_subset_pytorch"] = statistics.fmean(rows["PyTorch float"][: args.tflm_files])
        result["si_snri_per_file"] = rows
    return result


def markdown(res: dict[str, Any]) -> str:
    m = res["machine"]
    md = [
        "# Edge targets: ONNX Runtime, LiteRT, TensorFlow Lite Micro; float32 and int8",
        "",
        (f"Regenerate: `python3 benchmarks/edge_table.py` (needs `pip install --pre -e '.[edge]'`). {m['cpu']}, 1 thread, "
        f"load {m['load_1min']:.1f} on {m['cores']} cores (shared: compare within a table); torch {m['torch']}, "
        f"onnxruntime {m['onnxruntime']}, ai-edge-litert {m['ai_edge_litert']}. STMC, one STFT frame per step; on the target: the "
        "U-Net; on the host in float: the power-law compression and the complex-mask multiply. int8: weights per channel, "
        f"activations per tensor, calibrated on {res['calibration_frames']} consecutive frames of the train split."),
        "",
    ]
    for name, r in res["models"].items():
        md += [f"## {name}", ""]
        si = r.get("si_snri_db")
        if si:
            md += [
                (f"SI-SNRi on the real-voice test split, first {r['si_snri_files']['PyTorch float']} files "
                f"(TFLM rows: the first {r['si_snri_files']['TFLM float']}; PyTorch float on those: {r['si_snri_db_tflm_subset_pytorch']:.2f} dB); "
                f"PyTorch float: **{si['PyTorch float']:.2f} dB**."),
                "",
            ]
        md += [
            "| target | parity vs PyTorch (max rel., frames) | output SNR vs float (dB) | SI-SNRi (dB) | SI-SNRi vs float (dB) | step (ms) | model bytes | state bytes | state tensors int8 | host requantizations / step | arena bytes |",
            "|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|",
        ]
        for t in TARGETS:
            d = r["targets"][t]
            vf = f"{d['vs_float']['snr_db']:.1f}" if "vs_float" in d else "-"
            if si:
                flo = t.replace("int8", "float")
                ref_si = si[flo] if "int8" in t else (r["si_snri_db_tflm_subset_pytorch"] if t.startswith("TFLM") else si["PyTorch float"])
                s_cell, ds = f"{si[t]:.2f}", f"{si[t] - ref_si:+.2f}"
            else:
                s_cell, ds = "-", "-"
            md.append(
                f"| {t} | {d['vs_pytorch']['max_rel']:.1e} ({d['parity_frames']}) | {vf} | {s_cell} | {ds} | {d['step_ms']:.3f} | "
                f"{d['model_bytes']:,} | {d['state_bytes']:,} | {d['state_int8']}/{d['state_tensors']} | {d['host_conversions']} | "
                f"{d.get('arena_bytes', '-') if isinstance(d.get('arena_bytes'), str) or 'arena_bytes' not in d else format(d['arena_bytes'], ',')} |"
            )
        md += [""]
    md += [
        ("SI-SNRi vs float: an int8 row against its float row; a float row against PyTorch float (the same files). "
        "State bytes: what a device holds between steps (int8 states 1 byte per value). Host requantizations: state "
        "tensors a graph gives on another grid than the one it takes (or in float), converted by the streamer each step. "
        "TFLM times are its reference kernels on this x86 core, not a microcontroller's."),
    ]
    return "\n".join(md) + "\n"


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--data", default="/work/data/speech-v2")
    ap.add_argument("--files", type=int, default=40)
    ap.add_argument("--tflm-files", type=int, default=8)
    ap.add_argument("--calibration-frames", type=int, default=600)
    ap.add_argument("--rounds", type=int, default=30)
    ap.add_argument("--work", default="/tmp/soi_edge_work")
    ap.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "edge"))
    args = ap.parse_args()
    torch.set_num_threads(1)
    work = Path(args.work)

    enhancer, _ = load_checkpoint(None, pattern="STMC")
    masker = enhancer.masker.eval()
    compression = masker.body.branches[1][0]
    unet_medium = masker.unet.eval()

    def compress(spec: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return compression(spec)

    def combine(spec: torch.Tensor, mask: torch.Tensor) -> torch.Tensor:
        with torch.no_grad():
            return masker.body._combine([spec, mask])

    calib = calibration_frames(Path(args.data), compress, args.calibration_frames)
    items = open_split(args.data, "test")
    pairs = [tuple(t.float() for t in noisy_clean(items[i])) for i in range(min(args.files, len(items)))]
    log(f"{len(calib)} calibration frames, {len(pairs)} test files")

    cfg = UNetConfig(**json.loads(resource_files("soi").joinpath("assets/unet_small.json").read_text()))
    torch.manual_seed(5)
    unet_small = UNet(cfg, "STMC").eval()

    res: dict[str, Any] = {"machine": machine(), "calibration_frames": len(calib), "models": {}}
    res["models"]["shipped medium model (speech_medium_stmc.pt), STMC"] = run_model("medium", unet_medium, (compress, combine), args, work, calib, pairs)
    res["models"]["small U-Net (unet_small.json, random weights), STMC"] = run_model("small", unet_small, None, args, work, calib, pairs)
    Path(args.out + ".json").write_text(json.dumps(res, indent=2) + "\n")
    Path(args.out + ".md").write_text(markdown(res))
    print(markdown(res))


if __name__ == "__main__":
    main()
