"""A/B of the architecture change: the commit before it against the working tree, in one process,
interleaved, on the same weights.

    python3 benchmarks/architecture_ab.py [--before 6160498] [--rounds 30] [--forms eager,torchscript,aotinductor,onnxruntime]

The package as it was at ``--before`` is extracted from git into a temporary folder and imported
as ``soi_before`` (its imports are relative; the two asset look-ups by package name are renamed).
Both versions build the small speech U-Net (the ``SpectralMasker`` that ``soi enhance`` streams)
with the same weights for each pattern, in every form, and the benchmark harness of the working
tree (``soi.analysis.bench``) times all cases interleaved (rotating order, untimed frames at the
start of every block). Also counted: Python function calls per eager frame (``sys.setprofile``),
and the two non-U-Net stacks of the issue (a dilated 1-D stack, a 3-D stack) in every form.

Writes ``benchmarks/results/architecture_ab.json`` and ``.md``.
"""

from __future__ import annotations

import argparse
import importlib
import io
import json
import subprocess
import sys
import tarfile
import tempfile
from pathlib import Path

import torch

ROOT = Path(__file__).resolve().parents[1]
PATTERNS = ("STMC", "S-CC 2", "S-CC 5", "SS-CC 5")


def load_before(commit: str, into: Path):
    """The package at ``commit`` importable as ``soi_before``."""
    data = subprocess.run(["git", "-C", str(ROOT), "archive", commit, "src/soi"], check=True, capture_output=True).stdout
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        tar.extractall(into, filter="data")
    pkg = into / "soi_before"
    (into / "src" / "soi").rename(pkg)
    for f in pkg.rglob("*.py"):
        text = f.read_text()
        new = text.replace('resources.files("soi")', 'resources.files("soi_before")').replace('"soi.', '"soi_before.')
        if new != text:
            f.write_text(new)
    sys.path.insert(0, str(into))
    return importlib.import_module("soi_before")


def python_calls(step, frames: int = 4) -> list[int]:
    """Python function calls (profile 'call' events) of each of ``frames`` calls of ``step``."""
    counts = []
    for _ in range(frames):
        n = 0

        def prof(frame, event, arg):
            nonlocal n
            if event == "call":
                n += 1

        sys.setprofile(prof)
        try:
            step()
        finally:
            sys.setprofile(None)
        counts.append(n)
    return counts


def maskers(before, pattern: str, seed: int = 0):
    from soi.models import UNetConfig
    from soi.tasks.speech.masker import SpectralMasker

    torch.manual_seed(seed)
    config = UNetConfig.preset("small")
    after = SpectralMasker(config, pattern).eval()
    for m in after.modules():  # non-trivial BatchNorm statistics, as a trained model has
        if isinstance(m, torch.nn.BatchNorm2d):
            m.running_mean.uniform_(-0.2, 0.2)
            m.running_var.uniform_(0.5, 1.5)
    old = importlib.import_module("soi_before.speech").SpectralMasker(before.models.UNetConfig.preset("small"), pattern).eval()
    old.load_state_dict(after.state_dict())  # the same checkpoint keys in both versions
    return old, after


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--before", default="6160498")
    parser.add_argument("--rounds", type=int, default=30)
    parser.add_argument("--frames-per-round", type=int, default=10)
    parser.add_argument("--forms", default="eager,torchscript,aotinductor,onnxruntime")
    parser.add_argument("--patterns", default=",".join(PATTERNS))
    parser.add_argument("--out", default=str(ROOT / "benchmarks" / "results" / "architecture_ab"))
    args = parser.parse_args()
    forms = tuple(args.forms.split(","))
    patterns = tuple(args.patterns.split(","))
    torch.set_num_threads(1)

    from soi.analysis import bench as B

    tmp = Path(tempfile.mkdtemp(prefix="soi-ab-"))
    before = load_before(args.before, tmp / "pkg")
    importlib.import_module("soi_before.bench")
    old_bench = sys.modules["soi_before.bench"]

    calls, cases = {}, []
    x = torch.randn(1, 2, 1, 513)
    for pattern in patterns:
        old, new = maskers(before, pattern)
        for tag, model in (("before", old), ("after", new)):
            state = model.init_state(1)
            holder = {"s": state}

            def step(model=model, holder=holder):
                with torch.no_grad():
                    _, holder["s"] = model.step(x, holder["s"])

            for _ in range(4):  # past the warm-up of every pattern here
                step()
            calls[f"{pattern} {tag}"] = python_calls(step, 4)
        print(f"{pattern}: python calls per eager frame before {calls[f'{pattern} before']}, after {calls[f'{pattern} after']}", file=sys.stderr)
        cases += old_bench._stream_cases("before", pattern, old, forms, 1, tmp / "before", 1)
        cases += B._stream_cases("after", pattern, new, forms, 1, tmp / "after", 1)
    B._measure(cases, args.rounds, args.frames_per_round, warmup_rounds=2, progress=sys.stderr.isatty())

    # An S-CC pattern alternates full and skipped frames: a median over all frames lands between
    # the two modes and moves with their mix, so each case is summarised per schedule phase (the
    # harness's median per phase), compared as the mean over the phases and as the peak phase.
    rows = []
    for c in cases:
        s = B._summary(c, 1e3 / 62.5, 0.0, 62.5)
        rows.append({"version": c.variant, "pattern": c.pattern, "form": c.form, "avg_ms": s["step_ms_avg_over_phases"],
                     "peak_ms": s["step_ms_peak_phase"], "phase_ms": s["phase_ms"], "frames": len(c.times),
                     "build_s": round(c.build_s, 1)})  # fmt: skip
    by = {(r["version"], r["pattern"], r["form"]): r for r in rows}
    table = [
        "| pattern | form | before: mean over phases (ms) | after (ms) | after / before | peak phase before (ms) | after | after / before |",
        "|---|---|---:|---:|---:|---:|---:|---:|",
    ]
    ratios = []
    for pattern in patterns:
        for form in forms:
            b, a = by[("before", pattern, form)], by[("after", pattern, form)]
            ratio, peak = a["avg_ms"] / b["avg_ms"], a["peak_ms"] / b["peak_ms"]
            ratios.append({"pattern": pattern, "form": form, "ratio": ratio, "peak_ratio": peak})
            table.append(
                f"| {pattern} | {form} | {b['avg_ms']:.4f} | {a['avg_ms']:.4f} | {ratio:.3f} | {b['peak_ms']:.4f} | "
                f"{a['peak_ms']:.4f} | {peak:.3f} |"
            )
    call_table = ["| pattern | Python calls per eager frame, before | after |", "|---|---|---|"]
    for pattern in patterns:
        call_table.append(f"| {pattern} | {calls[f'{pattern} before']} | {calls[f'{pattern} after']} |")
    stack_rows, stack_table = [], ["| stack | form | mean over phases (ms) | / onnxruntime |", "|---|---|---:|---:|"]
    for name in B.STACKS:  # the working tree only: these stacks have no comparable form before
        result = B.bench_stack(name, timing=B.BenchTiming(rounds=args.rounds, frames_per_round=args.frames_per_round, warmup_rounds=2))
        ref = next(r for r in result["rows"] if r["form"] == "onnxruntime")["step_ms_avg_over_phases"]
        for r in result["rows"]:
            ms = r["step_ms_avg_over_phases"]
            stack_rows.append({"stack": name, "form": r["form"], "ms": ms, "vs_onnxruntime": ms / ref})
            stack_table.append(f"| {name} | {r['form']} | {ms:.4f} | {ms / ref:.2f} |")
    facts = B.machine_facts(1)
    report = {"before": args.before, "machine": facts, "rounds": args.rounds, "frames_per_round": args.frames_per_round,
              "rows": rows, "ratios": ratios, "python_calls": calls, "stacks": stack_rows}  # fmt: skip
    Path(args.out + ".json").write_text(json.dumps(report, indent=2, default=str) + "\n")
    md = [
        f"# Architecture A/B: {args.before} (before) against the working tree (after)",
        "",
        f"Small speech U-Net (SpectralMasker), one frame per step, 1 thread, same weights, all cases interleaved in one process "
        f"({args.rounds} rounds x {args.frames_per_round} frames per case; the median per schedule phase, compared as the mean over the phases and as the slowest phase). Regenerate: "
        "`python3 benchmarks/architecture_ab.py`.",
        "",
        *table,
        "",
        "Python function calls per eager frame (four consecutive frames after the warm-up; an S-CC pattern alternates "
        "full and skipped frames):",
        "",
        *call_table,
        "",
        "The two non-U-Net stacks (`soi.analysis.bench.STACKS`: a dilated 1-d stack, a 3-d stack), every form, "
        "after the change:",
        "",
        *stack_table,
        "",
        f"Machine: {facts.get('cpu', '')}, torch {torch.__version__}.",
    ]
    Path(args.out + ".md").write_text("\n".join(md) + "\n")
    print("\n".join(md))


if __name__ == "__main__":
    main()
