"""Regenerate benchmarks/RESULTS.md, its plots (PNG) and the raw JSON in one command:

    python benchmarks/run_all.py                 # the default speech U-Net (unet_small.json) and the paper-size one
    python benchmarks/run_all.py --configs small # only the small one (about 5 minutes on 2 cores)
    python benchmarks/run_all.py --quick         # few rounds: a smoke run of the whole pipeline

Everything is measured in one process per config, interleaved (soi.analysis.bench), single-threaded
(torch and onnxruntime), after warm-up. Writes:

    benchmarks/results/bench_<config>.json   every row, machine facts, the matmul reference, ONNX parity
    benchmarks/plots/step_latency_<config>.png
    benchmarks/plots/soi_phases_<config>.png
    benchmarks/plots/sisnri_vs_mmac.png      when speech results exist (--speech-results, soi evaluate --json)
    benchmarks/RESULTS.md
"""

from __future__ import annotations

import argparse
import json
import sys
import time
from pathlib import Path

HERE = Path(__file__).resolve().parent
ROOT = HERE.parent
sys.path.insert(0, str(ROOT / "src"))

from soi.analysis.bench import FAST_FORMS, FORMS, BenchTiming, bench, format_table  # noqa: E402

TARGET_SPEEDUP = 5.0
TARGET_RATIO_TOL = 0.10


def _rows(result, **match):
    return [r for r in result["rows"] if all(r.get(k) == v for k, v in match.items())]


def _one(result, **match):
    rows = [r for r in _rows(result, **match) if r["batch"] == 1]
    return rows[0] if rows else None


def check_targets(result: dict) -> list[dict]:
    """The issue's acceptance checks, computed from one run."""
    checks = []
    for form in FAST_FORMS:
        w, s = _one(result, variant="windowed", form=form), _one(result, variant="STMC", form=form)
        if w and s:
            speed = w["step_ms_median"] / s["step_ms_median"]
            checks.append(
                {
                    "target": f"STMC step >= {TARGET_SPEEDUP:g}x faster than windowed recompute ({form})",
                    "value": f"{speed:.1f}x ({w['step_ms_median']:.3f} ms vs {s['step_ms_median']:.3f} ms)",
                    "met": speed >= TARGET_SPEEDUP,
                }
            )
    for form in FORMS:
        base = _one(result, variant="STMC", form=form)
        if not base:
            continue
        for pattern in ("S-CC 2", "S-CC 5"):
            r = _one(result, variant="SOI PP", form=form, pattern=pattern)
            if not r:
                continue
            t_ratio = r["step_ms_avg_over_phases"] / base["step_ms_avg_over_phases"]
            m_ratio = r["mmac_per_s"] / base["mmac_per_s"]
            rel = t_ratio / m_ratio - 1
            checks.append(
                {
                    "target": f"{pattern}: average step / STMC step within 10% of the MAC ratio ({form})",
                    "value": f"time ratio {t_ratio:.3f} vs MAC ratio {m_ratio:.3f} ({100 * rel:+.1f}%)",
                    "met": abs(rel) <= TARGET_RATIO_TOL,
                    "required": form != "eager",
                }
            )
        fp = _one(result, variant="SOI FP", form=form)
        if fp and "arrival_ms_median" in fp:
            checks.append(
                {
                    "target": f"{fp['pattern']}: FP arrival-to-output latency below the STMC step ({form})",
                    "value": f"{fp['arrival_ms_median']:.3f} ms vs {base['step_ms_median']:.3f} ms "
                    f"({100 * (fp['arrival_ms_median'] / base['step_ms_median'] - 1):+.1f}%)",
                    "met": fp["arrival_ms_median"] < base["step_ms_median"],
                }
            )
    parity = result.get("onnx_parity_max_abs") or {}
    if parity:
        worst_abs = max(v["max_abs"] for v in parity.values())
        worst_rel = max(v["max_rel"] for v in parity.values())
        checks.append(
            {
                "target": "exported ONNX graphs match PyTorch: max |diff| / max |output| <= 1e-5 over 200 random frames, every variant",
                "value": f"relative {worst_rel:.1e} (absolute {worst_abs:.1e})",
                "met": worst_rel <= 1e-5,
            }
        )
    return checks


def plot(result: dict, name: str, plots: Path) -> list[str]:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    def label(r: dict) -> str:
        return r["variant"] if r["variant"] in ("windowed", "STMC") else f"{r['variant']}\n{r['pattern']}"

    def save(fig, path: Path) -> str:
        fig.tight_layout()
        fig.savefig(path, dpi=110)
        plt.close(fig)
        return path.name

    rows = [r for r in result["rows"] if r["batch"] == 1]
    labels = list(dict.fromkeys(label(r) for r in rows))
    by_label_form = {(label(r), r["form"]): r for r in rows}
    forms = [f for f in FORMS if any(r["form"] == f for r in rows)]
    fig, ax = plt.subplots(figsize=(12, 4.8))
    width = 0.8 / len(forms)
    off = (len(forms) - 1) / 2
    for i, form in enumerate(forms):
        hits = [(j + (i - off) * width, by_label_form[(lab, form)]) for j, lab in enumerate(labels) if (lab, form) in by_label_form]
        ys = [r["step_ms_avg_over_phases"] for _, r in hits]
        errs = [max(0.0, r["step_ms_p99"] - r["step_ms_avg_over_phases"]) for _, r in hits]
        ax.bar([x for x, _ in hits], ys, width, label=form, yerr=[[0] * len(errs), errs], capsize=2)
        for x, r in hits:
            if "arrival_ms_median" in r:  # FP
                ax.plot([x], [r["arrival_ms_median"]], "k_", markersize=10)
    ax.axhline(result["frame_ms"], color="gray", ls="--", lw=1)
    ax.text(len(labels) - 0.5, result["frame_ms"] * 1.05, f"frame hop {result['frame_ms']:.0f} ms", ha="right", fontsize=8)
    ax.set_yscale("log")
    ax.set_xticks(range(len(labels)))
    ax.set_xticklabels(labels, fontsize=8)
    ax.set_ylabel("ms per frame (log scale)")
    ax.set_title(
        f"Streaming step latency, U-Net '{name}', 1 thread ({result['machine']['cpu']})\n"
        "bar: average over the schedule, whisker: p99, black dash: FP arrival-to-output",
        fontsize=9,
    )
    ax.legend(fontsize=8)
    written = [save(fig, plots / f"step_latency_{name}.png")]

    # per-phase times of the SOI patterns against STMC (the fast forms)
    fast = [f for f in FAST_FORMS if any(r["form"] == f for r in rows)]
    fig, axes = plt.subplots(1, len(fast), figsize=(5.5 * len(fast), 4), sharey=False, squeeze=False)
    for ax, form in zip(axes[0], fast):
        sel = [r for r in rows if r["form"] == form and r["variant"] in ("STMC", "SOI PP", "SOI FP", "STMC exact-strided")]
        for k, r in enumerate(sel):
            ph = r["phase_ms"]
            ax.scatter([k] * len(ph), ph, s=18)
            ax.plot([k - 0.3, k + 0.3], [r["step_ms_avg_over_phases"]] * 2, "k-", lw=1)
            if "arrival_ms_median" in r:
                ax.plot([k - 0.3, k + 0.3], [r["arrival_ms_median"]] * 2, "r--", lw=1)
        ax.set_xticks(range(len(sel)))
        ax.set_xticklabels([f"{r['variant']}\n{r['pattern']}" for r in sel], fontsize=7)
        ax.set_title(f"{form}: per-phase median (dots), average (line), FP arrival (red)", fontsize=9)
        ax.set_ylabel("ms")
        ax.set_ylim(bottom=0)
    written.append(save(fig, plots / f"soi_phases_{name}.png"))
    return written


def plot_quality(plots: Path, src: Path | None) -> str | None:
    """SI-SNRi vs MMAC/s from ``soi evaluate --json`` results, when they exist."""
    if src is None or not src.is_file():
        return None
    data = json.loads(src.read_text())
    rows = data if isinstance(data, list) else data.get("rows", [])
    pts = [(r["mmac_per_s"], r["si_snri_db"], r["pattern"]) for r in rows if "mmac_per_s" in r and "si_snri_db" in r]
    if not pts:
        return None
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6, 4))
    for x, y, p in pts:
        ax.scatter([x], [y])
        ax.annotate(p, (x, y), fontsize=8, xytext=(3, 3), textcoords="offset points")
    ax.set_xlabel("MMAC/s")
    ax.set_ylabel("SI-SNRi (dB)")
    ax.set_title("Quality vs computation: trained speech models, default test split", fontsize=10)
    fig.tight_layout()
    path = plots / "sisnri_vs_mmac.png"
    fig.savefig(path, dpi=110)
    plt.close(fig)
    return path.name


def _fmt_checks(checks: list[dict]) -> str:
    lines = ["| target | measured | met |", "|---|---|---|"]
    for c in checks:
        met = "yes" if c["met"] else ("no" if c.get("required", True) else "no (not required)")
        lines.append(f"| {c['target']} | {c['value']} | {met} |")
    return "\n".join(lines)


def main(argv=None) -> int:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--configs", nargs="+", default=["small", "paper"], help="U-Net presets or JSON paths")
    ap.add_argument("--quick", action="store_true", help="few rounds (smoke run)")
    ap.add_argument("--rounds", type=int, default=None)
    ap.add_argument("--report-only", action="store_true", help="rebuild RESULTS.md and the plots from results/*.json without measuring")
    ap.add_argument(
        "--speech-results",
        default=str(HERE / "results" / "speech" / "evaluation.json"),
        help="soi evaluate --json output for the SI-SNRi vs MMAC/s plot (default: the committed speech results)",
    )
    ap.add_argument("--out", default=str(HERE), help="where RESULTS.md, results/ and plots/ go")
    args = ap.parse_args(argv)
    out = Path(args.out)
    (out / "results").mkdir(parents=True, exist_ok=True)
    (out / "plots").mkdir(parents=True, exist_ok=True)
    summary = {}
    for cfg in args.configs:
        name = Path(cfg).stem if cfg.endswith(".json") else cfg
        rounds = args.rounds or (4 if args.quick else (40 if name == "small" else 20))
        raw = out / "results" / f"bench_{name}.json"
        if args.report_only:
            result = json.loads(raw.read_text())
        else:
            t0 = time.time()
            print(f"run_all: benchmarking U-Net '{name}' ({rounds} rounds) ...", flush=True)
            result = bench(
                cfg,
                throughput_batches=(8,),
                timing=BenchTiming(rounds=rounds, frames_per_round=10, warmup_rounds=2 if args.quick else 5),
                progress=True,
            )
            result["wall_s"] = time.time() - t0
        checks = check_targets(result)
        result["targets"] = checks
        raw.write_text(json.dumps(result, indent=2, default=str) + "\n")
        pngs = plot(result, name, out / "plots")
        summary[name] = (result, checks, pngs)
        print(f"run_all: '{name}' done in {result['wall_s']:.0f} s", flush=True)
    quality = plot_quality(out / "plots", Path(args.speech_results) if args.speech_results else None)

    first = next(iter(summary.values()))[0]
    m = first["machine"]
    text = [
        "# Benchmark results",
        "",
        "Regenerate with `python benchmarks/run_all.py` (all of this file, the JSON in `results/` and the",
        "plots in `plots/`; `--configs small` for the default model only, `--quick` for a smoke run).",
        "How to read it and what limits each number: `docs/deploy.md`.",
        "",
        "## Machine",
        "",
        f"- CPU: {m['cpu']}, {m['logical_cores']} logical cores; measured with {m['torch_threads']} thread (torch and onnxruntime)",
        f"- torch {m['torch']}, onnxruntime {m.get('onnxruntime')}, onnx {m.get('onnx')}, numpy {m['numpy']}, Python {m['python']}",
        f"- {m['platform']}",
        f"- load average at start / end of the first run: {m.get('load_average_at_start')} / {m.get('load_average_at_end')}"
        " (the machine is shared; every configuration is measured interleaved in one process, so"
        " a load change hits all of them alike, but absolute numbers and tails are noisier than on an idle machine)",
        "",
        "Forms: **eager** = the plain `model.step` (Python per layer, BatchNorm unfolded; the reference);"
        " **torchscript** = `soi.deploy.FastStreamer(backend=\"script\")` (BatchNorm folded, lean shift registers, one"
        " `torch.export` graph per schedule phase, traced to TorchScript and frozen); **aotinductor** ="
        " `FastStreamer(backend=\"aoti\")` (the same graphs compiled ahead of time to one C++ library per phase by"
        " AOTInductor: elementwise work fused, every convolution im2col + one matrix product);"
        " **onnxruntime** = the graphs of `soi export` run by `soi.deploy.runtime.OnnxStreamer`.",
        "Columns: per-frame time over all timed frames (median, p90, p99); *avg* = mean over the schedule's phases of"
        " each phase's median (what a frame costs on average: the quantity compared with the MAC ratio); *peak* = the"
        " slowest phase; *arrival* = FP only, from a frame's arrival to its output with `prepare()` done between frames;"
        " RTF = mean time / 16 ms hop; streams/s = B x frames per second one core sustains; MMAC/s = `soi.cost` at"
        " 62.5 frames/s (windowed: the MACs of re-running the window); GMAC/s = MACs actually done per second of step"
        " time; eff. = GMAC/s against the compute-bound reference.",
        "",
    ]
    for name, (result, checks, pngs) in summary.items():
        ref = result["reference"]
        text += [
            f"## U-Net `{name}`",
            "",
            f"Config: `{json.dumps(result['config'])}`. Timed {result['timing']['rounds']} interleaved rounds x "
            f"{result['timing']['frames_per_round']} frames per configuration (each block after "
            f"{result['timing'].get('block_warmup', 2)} untimed frames) after {result['timing']['warmup_rounds']} warm-up rounds; "
            f"run took {result['wall_s']:.0f} s.",
            "",
            "### Targets",
            "",
            _fmt_checks(checks),
            "",
            "### Steps",
            "",
            format_table(result["rows"]),
            "",
            f"Compute-bound reference: dense products of this network's layer shapes (one frame, im2col/GEMM form) run at "
            f"**{ref['gmac_per_s']:.2f} GMAC/s** back to back ({ref['macs_per_frame'] / 1e6:.2f} MMAC per frame in "
            f"{ref['seconds_per_frame'] * 1e3:.3f} ms); a 512x512x512 product runs at {ref['peak_gmac_per_s_512']:.1f} GMAC/s.",
            "",
            "ONNX parity, max |onnxruntime - PyTorch| over 200 random frames, against the BatchNorm-folded model that was"
            " exported: " + ", ".join(f"{k}: {v['max_abs']:.1e} (outputs up to {v['max_ref']:.1f})" for k, v in (result.get("onnx_parity_max_abs") or {}).items())
            + "; against the original (unfolded) model, i.e. including the float32 rounding of folding: "
            + ", ".join(f"{k}: {v['max_abs']:.1e}" for k, v in (result.get("onnx_vs_unfolded_max_abs") or {}).items()) + ".",
            "",
            *[f"![{p}](plots/{p})" for p in pngs],
            "",
        ]
    if quality:
        text += ["## Quality vs computation", "", f"![SI-SNRi vs MMAC/s](plots/{quality})", ""]
    else:
        text += [
            "## Quality vs computation",
            "",
            "No speech evaluation (`soi evaluate --json`, see `benchmarks/train_speech_models.sh`) was available when",
            "this ran, so the SI-SNRi vs MMAC/s plot was not drawn; pass `--speech-results FILE` once it exists.",
            "",
        ]
    analysis = HERE / "ANALYSIS.md"
    if analysis.is_file():
        text += [analysis.read_text()]
    (out / "RESULTS.md").write_text("\n".join(text) + "\n")
    print(f"run_all: wrote {out / 'RESULTS.md'}")
    for name, (_, checks, _) in summary.items():
        for c in checks:
            print(f"  [{name}] {'MET ' if c['met'] else 'MISS'} {c['target']}: {c['value']}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
