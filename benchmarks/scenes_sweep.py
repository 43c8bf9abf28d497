"""Acoustic scene classification, the SOI paper's figure 6 on the default generated scene data: the
GhostNet's three variants (baseline, STMC, SOI) at several widths, several seeds each, test-split
accuracy against MMAC/s.

    python3 benchmarks/scenes_sweep.py [--data data/scenes] [--widths 0.2 0.3 0.5 1.0] [--seeds 0 1 2]
        [--steps 250] [--batch-size 16] [--segment-seconds 1.0]
    python3 benchmarks/scenes_sweep.py --table-only

Every run trains with the project's one loop (:func:`soi.tasks.scenes.train.train_scenes`: Adam at
a constant learning rate, random crops of ``--segment-seconds``, per-frame cross-entropy) in its own
folder ``training/scenes/<variant>-w<width>-s<seed>/`` (``--runs-dir``), validated halfway and at
the end on the valid split (whole clips), and its ``best.pt`` is then scored on the unseen test
split (whole 10-s clips; STMC and SOI: the causal running average of the frame posteriors, which a
stream reproduces exactly; the baseline: its one look-ahead answer for the whole clip). The score
lands in the run folder's ``test.json``; a run with one is skipped, a run interrupted mid-training
resumes from its ``last.pt``. Runs go seed by seed, so that the first seed's full picture comes first.

Cost (MMAC/s at 50 frames/s, :func:`soi.cost`): STMC and SOI their streaming cost; the baseline,
which looks ahead, is plotted at the cost of its network run once per frame of input (the same
network as STMC's, so at STMC's MMAC/s), and its online cost (windowed recompute over the receptive
field, ``soi cost --pattern baseline``) is in the table. Writes ``benchmarks/results/scenes_sweep.{json,md}``
and ``benchmarks/plots/scenes_accuracy_vs_mmac.png``.
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import torch

from soi.analysis.bench import machine_facts
from soi.analysis.cost import cost, windowed_cost
from soi.files import write_file
from soi.models.ghostnet import PATTERNS, SIZES, ghostnet, streaming_ghostnet
from soi.tasks.scenes.classifier import load_checkpoint
from soi.tasks.scenes.data import open_scenes, scene_classes
from soi.tasks.scenes.evaluate import evaluate_scenes
from soi.tasks.scenes.generate import generate_scenes
from soi.tasks.scenes.train import SceneTrainConfig, train_scenes

ROOT = Path(__file__).resolve().parents[1]
FRAME_RATE = 50.0
N_MELS = 64
NAMES = {w: s for s, w in SIZES.items()}
_COSTS: dict[float, dict[str, float]] = {}  # by width: conversions take seconds, the table is rewritten per seed


def run_name(variant: str, width: float, seed: int) -> str:
    return f"{variant}-w{width:g}-s{seed}"


def costs(width: float, classes: int) -> dict[str, float]:
    """MMAC/s of the three variants at ``width`` (and the baseline's windowed recompute online)."""
    net = ghostnet(width=width, num_classes=classes, time_strides=False).eval()
    stmc = streaming_ghostnet(net, "STMC", (1, N_MELS))
    soi = streaming_ghostnet(net, "SOI", (1, N_MELS))
    window = (1, stmc.receptive_field, N_MELS)
    return {
        "STMC": cost(stmc, frame_rate=FRAME_RATE).mmac_per_s,
        "SOI": cost(soi, frame_rate=FRAME_RATE).mmac_per_s,
        "baseline": cost(stmc, frame_rate=FRAME_RATE).mmac_per_s,
        "baseline_windowed": windowed_cost(net, window, FRAME_RATE).mmac_per_s,
        "parameters_M": sum(p.numel() for p in net.parameters()) / 1e6,
    }


def run_one(args: argparse.Namespace, variant: str, width: float, seed: int) -> dict:
    """Train (or resume) one run and score its best.pt on the test split; ``test.json`` in its folder."""
    out = args.runs_dir / run_name(variant, width, seed)
    done = out / "test.json"
    if done.is_file():
        return json.loads(done.read_text())
    cfg = SceneTrainConfig(
        data=str(args.data), out_dir=str(out), width=width, pattern=variant, n_mels=N_MELS,
        batch_size=args.batch_size, segment_seconds=args.segment_seconds, lr=args.lr, lr_patience=None,
        max_steps=args.steps, seed=seed, valid_every=max(1, args.steps // 2), progress=False,
    )  # fmt: skip
    torch.manual_seed(seed)  # the network's initialisation (built before the loop seeds itself)
    t0 = time.monotonic()
    summary = train_scenes(cfg)
    train_s = time.monotonic() - t0
    classifier, extra = load_checkpoint(out / "best.pt")
    test = open_scenes(str(args.data), "test", classifier.sample_rate, classifier.classes)
    t0 = time.monotonic()
    result = evaluate_scenes(classifier, test)
    record = {
        "variant": variant, "width": width, "seed": seed, "steps": summary["steps"], "best_step": extra["step"],
        "valid_accuracy": extra["valid_accuracy"], "test_accuracy": result.accuracy, "test_clips": result.clips,
        "per_class": result.per_class, "train_loss": summary["loss"], "train_seconds": train_s,
        "test_seconds": time.monotonic() - t0,
        "config": {"batch_size": args.batch_size, "segment_seconds": args.segment_seconds, "lr": args.lr, "n_mels": N_MELS},
    }  # fmt: skip
    write_file(done, json.dumps(record, indent=2).encode(), force=True)
    print(f"{run_name(variant, width, seed)}: test {result.accuracy:.1f} % (valid {extra['valid_accuracy']:.1f} %, "
          f"loss {summary['loss']:.3f}, {train_s:.0f} s)", flush=True)  # fmt: skip
    return record


def summarise(records: list[dict], widths: list[float], cost_of: dict[float, dict], chance: float) -> dict:
    rows = []
    for width in widths:
        for variant in PATTERNS:
            accs = [r["test_accuracy"] for r in records if r["variant"] == variant and r["width"] == width]
            if not accs:
                continue
            rows.append({
                "variant": variant, "width": width, "size": NAMES.get(width, f"w{width:g}"), "seeds": len(accs),
                "accuracy_mean": statistics.fmean(accs), "accuracy_std": statistics.stdev(accs) if len(accs) > 1 else 0.0,
                "accuracy_min": min(accs), "accuracy_max": max(accs), "accuracies": accs,
                "mmac_per_s": cost_of[width][variant],
                "online_mmac_per_s": cost_of[width]["baseline_windowed" if variant == "baseline" else variant],
                "parameters_M": cost_of[width]["parameters_M"],
            })  # fmt: skip
    per_size = []
    for width in widths:
        row = {r["variant"]: r for r in rows if r["width"] == width}
        if "STMC" in row and "SOI" in row:
            s, o = row["STMC"], row["SOI"]
            spread = max(s["accuracy_std"], o["accuracy_std"])
            per_size.append({
                "width": width, "size": s["size"], "saving_percent": 100.0 * (1 - o["mmac_per_s"] / s["mmac_per_s"]),
                "accuracy_change": o["accuracy_mean"] - s["accuracy_mean"], "larger_spread": spread,
                # holds: SOI's mean within the larger of the two seed spreads (std) of STMC's; a spread
                # needs two seeds of each, without them nothing is said
                "holds": o["accuracy_mean"] >= s["accuracy_mean"] - spread if min(s["seeds"], o["seeds"]) > 1 else None,
            })  # fmt: skip
    return {"rows": rows, "soi_vs_stmc": per_size, "chance_percent": chance}


def write_markdown(path: Path, result: dict) -> None:
    cfg = result["config"]
    lines = [
        "# Acoustic scene classification: accuracy vs cost (the SOI paper's figure 6)",
        "",
        (f"GhostNet baseline / STMC / SOI on the default generated scene set (`{cfg['data']}`: {cfg['clips']}; "
        f"{cfg['classes']} classes, chance {result['summary']['chance_percent']:.1f} %), up to {len(cfg['seeds'])} seeds per model (column seeds). "
        f"Each run: {cfg['steps']} steps of batch {cfg['batch_size']} x {cfg['segment_seconds']:g}-s random crops, Adam "
        f"lr {cfg['lr']:g} (constant), 64 mels at 50 frames/s; best of the validations at steps {cfg['steps'] // 2} and "
        f"{cfg['steps']} scored on the test split (whole 10-s clips, recordings unseen in training). "
        "Regenerate: `python3 benchmarks/scenes_sweep.py` (resumes; `--table-only` rewrites this)."),
        "",
        "| size | width | variant | MMAC/s | online MMAC/s | params (M) | test accuracy % (mean ± std) | min .. max | seeds |",
        "|---|---:|---|---:|---:|---:|---:|---:|---:|",
    ]
    for r in result["summary"]["rows"]:
        lines.append(
            f"| {r['size']} | {r['width']:g} | {r['variant']} | {r['mmac_per_s']:.1f} | {r['online_mmac_per_s']:.1f} | "
            f"{r['parameters_M']:.2f} | {r['accuracy_mean']:.1f} ± {r['accuracy_std']:.1f} | "
            f"{r['accuracy_min']:.1f} .. {r['accuracy_max']:.1f} | {r['seeds']} |"
        )
    lines += [
        "",
        "MMAC/s: STMC and SOI their streaming cost; the baseline at its network's cost per frame of input (one",
        "offline pass); online MMAC/s: the baseline's windowed recompute over its receptive field.",
        "",
        "SOI against STMC per size (holds: SOI's mean accuracy is no lower than STMC's minus the larger seed std; -: fewer than 2 seeds):",
        "",
        "| size | width | SOI saving % | accuracy change (points) | larger std | holds |",
        "|---|---:|---:|---:|---:|---|",
    ]
    for s in result["summary"]["soi_vs_stmc"]:
        lines.append(
            f"| {s['size']} | {s['width']:g} | {s['saving_percent']:.1f} | {s['accuracy_change']:+.1f} | "
            f"{s['larger_spread']:.1f} | {'-' if s['holds'] is None else 'yes' if s['holds'] else 'no'} |"
        )
    m = result["machine"]
    per_run = result["train_seconds_total"] / max(1, len(result["runs"]))
    lines += ["", f"Machine: {m.get('cpu', '?')}, torch {m.get('torch', '?')}, 1 thread per run; training time per run {per_run:.0f} s on average."]
    write_file(path, ("\n".join(lines) + "\n").encode(), force=True)


def plot(path: Path, result: dict) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    styles = {"baseline": ("tab:gray", "s", "Baseline (same padding, offline)"), "STMC": ("tab:blue", "o", "STMC"), "SOI": ("tab:red", "^", "SOI")}
    for variant in PATTERNS:
        rows = [r for r in result["summary"]["rows"] if r["variant"] == variant]
        if not rows:
            continue
        color, marker, label = styles[variant]
        x = [r["mmac_per_s"] for r in rows]
        ax.errorbar(x, [r["accuracy_mean"] for r in rows], yerr=[r["accuracy_std"] for r in rows], color=color,
                    marker=marker, capsize=3, label=label, linestyle="-")  # fmt: skip
        for r in rows:
            ax.scatter([r["mmac_per_s"]] * len(r["accuracies"]), r["accuracies"], color=color, s=8, alpha=0.35)
    ax.axhline(result["summary"]["chance_percent"], color="k", linestyle=":", linewidth=1, label="chance")
    ax.set_xscale("log")
    ax.set_xlabel("MMAC/s (50 frames/s)")
    ax.set_ylabel("test accuracy (%)")
    ax.set_title("Scene classification: GhostNet variants, mean ± std over seeds")
    ax.grid(True, which="both", alpha=0.3)
    ax.legend(fontsize=8)
    fig.tight_layout()
    path.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(path, dpi=120)
    plt.close(fig)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--data", type=Path, default=ROOT / "data" / "scenes")
    p.add_argument("--minutes", type=float, default=60.0, help="generate the set with this many minutes if --data has none (default 60)")
    p.add_argument("--runs-dir", type=Path, default=ROOT / "training" / "scenes")
    p.add_argument("--widths", type=float, nargs="+", default=[0.2, 0.3, 0.5, 1.0])
    p.add_argument("--variants", nargs="+", choices=PATTERNS, default=list(PATTERNS))
    p.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    p.add_argument("--steps", type=int, default=250)
    p.add_argument("--batch-size", type=int, default=16)
    p.add_argument("--segment-seconds", type=float, default=1.0)
    p.add_argument("--lr", type=float, default=2e-3)
    p.add_argument("--table-only", action="store_true", help="only write the table and plot from the runs' test.json")
    p.add_argument("--results", type=Path, default=ROOT / "benchmarks" / "results" / "scenes_sweep")
    p.add_argument("--plot", type=Path, default=ROOT / "benchmarks" / "plots" / "scenes_accuracy_vs_mmac.png")
    args = p.parse_args()
    torch.set_num_threads(1)
    if not (args.data / "meta.csv").is_file():
        generate_scenes(args.data, minutes=args.minutes, seed=0)
    classes = scene_classes(str(args.data))
    records = []
    for seed in args.seeds:
        for width in args.widths:
            for variant in args.variants:
                folder = args.runs_dir / run_name(variant, width, seed)
                if args.table_only:
                    if (folder / "test.json").is_file():
                        records.append(json.loads((folder / "test.json").read_text()))
                    continue
                records.append(run_one(args, variant, width, seed))
        if records:
            write_results(args, records, classes)
    if args.table_only:
        write_results(args, records, classes)


def write_results(args: argparse.Namespace, records: list[dict], classes: tuple[str, ...]) -> None:
    widths = sorted({r["width"] for r in records})
    for w in widths:
        if w not in _COSTS:
            _COSTS[w] = costs(w, len(classes))
    cost_of = {w: _COSTS[w] for w in widths}
    manifest = json.loads((args.data / "manifest.json").read_text())
    clips = ", ".join(f"{len(s['items'])} {name}" for name, s in manifest["splits"].items()) + " clips of 10 s"
    result = {
        "config": {
            "data": str(args.data.relative_to(ROOT) if args.data.is_relative_to(ROOT) else args.data), "clips": clips,
            "classes": len(classes), "steps": args.steps, "batch_size": args.batch_size,
            "segment_seconds": args.segment_seconds, "lr": args.lr, "seeds": sorted({r["seed"] for r in records}),
        },
        "costs": {f"{w:g}": c for w, c in cost_of.items()},
        "summary": summarise(records, widths, cost_of, 100.0 / len(classes)),
        "runs": records,
        "train_seconds_total": sum(r["train_seconds"] for r in records),
        "machine": machine_facts(1),
    }  # fmt: skip
    args.results.parent.mkdir(parents=True, exist_ok=True)
    json_path = args.results.with_suffix(".json")
    write_file(json_path, json.dumps(result, indent=2).encode(), force=True)
    write_markdown(args.results.with_suffix(".md"), result)
    plot(args.plot, result)


if __name__ == "__main__":
    main()
