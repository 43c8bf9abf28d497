"""SOI patterns of the shipped speech model: fine-tuned from it against trained from scratch, at the
same number of steps, next to the paper's tables 1 and 2.

    python3 benchmarks/speech_soi.py --stmc CHECKPOINT --data DIR [--steps 400] [--runs NAME ...]
    python3 benchmarks/speech_soi.py --stmc CHECKPOINT --data DIR --table-only

A run is ``"<pattern> fine-tuned"`` (``soi train --init-from CHECKPOINT``: the STMC model's weights,
shared across patterns by name) or ``"<pattern> from scratch"`` (random initialisation, the same
seed, steps, batch, segments and learning-rate schedule). Each run trains in
``training/speech-soi/<slug>/`` (``--runs-dir``) (resumed when its ``last.pt`` is there) and is then scored streamed
on the test split (``evaluate_checkpoint``: what ``soi enhance`` writes, hop by hop); the STMC
checkpoint is scored on the same files. ``"STMC fine-tuned"`` is the control: the STMC model
trained the same steps more, so that SI-SNRi retained (a pattern's SI-SNRi over that run's) compares
models that have had the same training; complexity retained is MMAC/s over STMC's. Runs are independent processes' work: give
``--runs`` to split them over processes (one thread each), then ``--table-only`` to write
``benchmarks/results/speech_soi.{json,md}`` from what the runs saved.
"""

from __future__ import annotations

import argparse
import json
import time
from pathlib import Path

from soi.tasks.speech.evaluate import evaluate_checkpoint
from soi.tasks.speech.masker import read_checkpoint
from soi.train import TrainConfig, train

ROOT = Path(__file__).resolve().parents[1]
RUNS = ("STMC fine-tuned", "S-CC 2 fine-tuned", "S-CC 5 fine-tuned", "SS-CC 5 fine-tuned", "S-CC 2 from scratch", "SS-CC 5 from scratch")
# The paper's U-Net on DNS (tables 1 and 2): SI-SNRi (dB), SI-SNRi retained (%), complexity retained (%)
PAPER = {"STMC": (7.69, 100.0, 100.0), "S-CC 2": (7.23, 94.0, 51.4), "S-CC 5": (7.47, 97.2, 64.8), "SS-CC 5": (7.24, 94.1, 64.8)}


def _split(name: str) -> tuple[str, bool]:
    """``"S-CC 2 fine-tuned"`` -> ``("S-CC 2", True)``."""
    pattern, _, how = name.rpartition(" ")
    if how == "scratch":
        return pattern.removesuffix(" from"), False
    return pattern, True


def run_one(name: str, stmc: Path, data: str, steps: int, limit: int, runs: Path) -> dict:
    """Train (or resume) run ``name`` for ``steps`` steps, then score its best checkpoint."""
    pattern, fine_tuned = _split(name)
    out = runs / name.lower().replace(" ", "-")
    # everything as the STMC model was trained (model, loss, mask bound, batch, segments, remix, lr)
    trained = read_checkpoint(stmc)["extra"]["train_config"]
    cfg = TrainConfig(
        **{
            **trained,
            "data": data,
            "model_config": str(ROOT / trained["model_config"]),  # absolute: any working folder
            "out_dir": str(out),
            "pattern": pattern,
            "init_from": str(stmc) if fine_tuned else None,
            "max_steps": steps,
            "minutes": None,
            "valid_every": max(1, steps // 2),
            "resume": True,
            "progress": False,
        }
    )
    t0 = time.monotonic()
    train(cfg)
    scored = evaluate_checkpoint(out / "best.pt", data, "test", limit=limit)
    result = {"run": name, "pattern": pattern, "fine_tuned": fine_tuned, "steps": steps,
              "train_minutes_this_call": round((time.monotonic() - t0) / 60, 1), **scored}  # fmt: skip
    (out / "score.json").write_text(json.dumps(result, indent=2))
    print(json.dumps({k: result[k] for k in ("run", "si_snri_db", "mmac_per_s")}), flush=True)
    return result


def score_stmc(stmc: Path, data: str, limit: int, runs: Path) -> dict:
    path = runs / "stmc-score.json"
    if path.is_file() and json.loads(path.read_text()).get("checkpoint") == str(stmc):
        return json.loads(path.read_text())
    result = {"run": "STMC (the checkpoint)", "pattern": "STMC", **evaluate_checkpoint(stmc, data, "test", limit=limit)}
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2))
    return result


def table(stmc: dict, rows: list[dict]) -> str:
    """Retained percentages are against the STMC model trained as long (``"STMC fine-tuned"``: the
    same steps more from the same checkpoint) when that run is there, else against the checkpoint."""
    ref = next((r for r in rows if r["run"] == "STMC fine-tuned"), stmc)
    lines = [
        "| model | steps | SI-SNRi (dB) | SI-SNRi retained (%) | MMAC/s | complexity retained (%) | paper SI-SNRi (dB) | paper SI-SNRi retained (%) | paper complexity retained (%) |",
        "|---|---:|---:|---:|---:|---:|---:|---:|---:|",
    ]
    for r in [stmc, *rows]:
        paper = PAPER.get(r["pattern"], ("", "", ""))
        lines.append(
            f"| {r['run']} | {r.get('steps', '')} | {r['si_snri_db']:.2f} | {100 * r['si_snri_db'] / ref['si_snri_db']:.1f} | {r['mmac_per_s']:.1f} | "
            f"{100 * r['mmac_per_s'] / ref['mmac_per_s']:.1f} | {paper[0]} | {paper[1]} | {paper[2]} |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--stmc", type=Path, required=True, help="the STMC checkpoint the SOI patterns start from")
    parser.add_argument("--data", required=True, help="data set root (train/, valid/, test/)")
    parser.add_argument("--steps", type=int, default=400, help="training steps of every run")
    parser.add_argument("--limit", type=int, default=40, help="test items scored (the first ones, as the peer table)")
    parser.add_argument("--runs", nargs="*", choices=RUNS, default=list(RUNS), help="runs to train and score here")
    parser.add_argument("--table-only", action="store_true", help="only write the table from the runs' saved scores")
    parser.add_argument("--runs-dir", type=Path, default=ROOT / "training" / "speech-soi", help="where the runs train")
    parser.add_argument("--out", type=Path, default=ROOT / "benchmarks" / "results" / "speech_soi")
    args = parser.parse_args()
    if not args.table_only:
        for name in args.runs:
            run_one(name, args.stmc, args.data, args.steps, args.limit, args.runs_dir)
    stmc = score_stmc(args.stmc, args.data, args.limit, args.runs_dir)
    rows = [json.loads(p.read_text()) for name in RUNS if (p := args.runs_dir / name.lower().replace(" ", "-") / "score.json").is_file()]
    args.out.with_suffix(".json").write_text(json.dumps({"stmc": stmc, "runs": rows}, indent=2))
    intro = (
        f"# SOI patterns of the shipped speech model: fine-tuned vs from scratch\n\n"
        f"Every run {args.steps} steps from `{args.stmc}` "
        f"(fine-tuned) or from random weights (from scratch), otherwise trained as it was; retained percentages against "
        f"`STMC fine-tuned` (the STMC model trained the same steps more), so that every pattern has had the same training; "
        f"scored streamed on the first {args.limit} files of the test split of `{args.data}`. Regenerate: `python3 benchmarks/speech_soi.py --stmc ... --data ...`.\n\n"
    )
    args.out.with_suffix(".md").write_text(intro + table(stmc, rows) + "\n")
    print(table(stmc, rows))


if __name__ == "__main__":
    main()
