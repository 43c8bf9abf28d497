"""``soi scenes generate`` and ``soi cost --model ghostnet``: what they print, and one line on stderr
with exit status 2 for each kind of bad input."""

import json

import pytest

from soi.cli import main
from soi.tasks.scenes import sources


@pytest.mark.skipif(
    not sources.LINCITY_DIR.is_dir(),
    reason="lincity-ng-data is not installed (bash setup.sh)",
)
def test_scenes_generate_writes_a_set_and_refuses_another_in_its_place(
    tmp_path, capsys
):
    assert (
        main(
            ["scenes", "generate", str(tmp_path / "set"), "--minutes", "0.5", "--quiet"]
        )
        == 0
    )
    out = capsys.readouterr().out
    assert "train: 1 clips" in out and f"wrote {tmp_path / 'set'}" in out
    assert (
        main(
            [
                "scenes",
                "generate",
                str(tmp_path / "set"),
                "--minutes",
                "0.5",
                "--seed",
                "2",
                "--quiet",
            ]
        )
        == 2
    )
    err = capsys.readouterr().err.strip()
    assert (
        err.startswith("soi scenes: error:")
        and "other parameters (seed 0 -> 2)" in err
        and len(err.splitlines()) == 1
    )


@pytest.mark.parametrize(
    "argv, message",
    [
        (["scenes"], "the following arguments are required: ACTION"),
        (
            ["scenes", "generate", "x", "--minutes", "0"],
            "argument --minutes: expected a number > 0, got '0'",
        ),
        (["scenes", "mix"], "invalid choice: 'mix'"),
        (
            ["cost", "--width", "0.5"],
            "--width is the GhostNet's width multiplier; pass --model ghostnet",
        ),
        (
            ["cost", "--model", "ghostnet", "--width", "0.2", "--pattern", "S-CC 2"],
            "patterns are baseline, STMC, SOI; got 'S-CC 2'",
        ),
        (
            ["cost", "--model", "ghostnet", "--width", "-1"],
            "argument --width: expected a number > 0",
        ),
    ],
)
def test_bad_input_is_one_line_and_status_2(argv, message, capsys):
    assert main(argv) == 2
    err = capsys.readouterr().err.strip()
    assert message in err and len(err.splitlines()) == 1, err


def test_cost_of_the_three_ghostnet_patterns(capsys):
    argv = [
        "cost",
        "--model",
        "ghostnet",
        "--width",
        "0.2",
        "--mels",
        "32",
        "--pattern",
        "baseline",
        "--pattern",
        "STMC",
        "--pattern",
        "SOI",
        "--json",
    ]
    assert main(argv) == 0
    rows = json.loads(capsys.readouterr().out)
    assert [r["pattern"] for r in rows] == ["baseline", "STMC", "SOI"]
    assert all(
        set(r)
        == {
            "pattern",
            "mmac_per_s",
            "retained_percent",
            "peak_mmac_per_s",
            "precomputed_percent",
            "state_bytes",
        }
        for r in rows
    )
    baseline, stmc, soi_ = rows
    assert (
        stmc["retained_percent"] == 100.0
        and baseline["mmac_per_s"] > 10 * stmc["mmac_per_s"]
    ), "windowed recompute"
    assert (
        soi_["mmac_per_s"] < 0.85 * stmc["mmac_per_s"]
        and soi_["peak_mmac_per_s"] == stmc["peak_mmac_per_s"]
    ), "PP: the average drops, not the peak"
