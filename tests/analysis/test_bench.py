"""soi bench: the JSON rows a user scripts against, the schedule averages, and the bench's own
checks. No timing is asserted (the numbers depend on the machine); only that each configuration
was built, timed and reported with consistent analytic figures."""

from __future__ import annotations

import json

import pytest

from soi.analysis.bench import FORMS, BenchTiming, bench
from soi.cli import main
from soi.analysis.cost import cost
from soi.models.unet import UNet, UNetConfig

TINY = UNetConfig(freq_bins=33, in_channels=2, out_channels=2, channels=(4, 8, 8), kernel=(2, 5), freq_stride=2)


def test_cli_json_rows(capsys, tmp_path):
    path = tmp_path / "unet.json"
    TINY.to_json(path)
    argv = ["bench", "--config", str(path), "--pattern", "STMC", "--pattern", "S-CC 2", "--form", "eager", "--form", "torchscript"]
    assert main([*argv, "--rounds", "2", "--frames-per-round", "2", "--json"]) == 0
    rows = json.loads(capsys.readouterr().out)
    got = {(r["variant"], r["form"], r["pattern"]) for r in rows}
    expected = {
        (v, f, p)
        for f in ("eager", "torchscript")
        for v, p in [("windowed", "STMC"), ("STMC", "STMC"), ("SOI PP", "S-CC 2"), ("STMC exact-strided", "S-CC 2")]
    }
    assert got == expected
    for r in rows:
        assert {"variant", "form", "pattern", "step_ms_median", "step_ms_p99", "mmac_per_s"} <= set(r)
        assert 0 < r["step_ms_median"] <= r["step_ms_p99"], r
    mmac = {(r["variant"], r["pattern"]): r["mmac_per_s"] for r in rows}
    assert mmac[("STMC", "STMC")] == pytest.approx(cost(UNet(TINY, "STMC"), 62.5).mmac_per_s, rel=1e-6)
    assert mmac[("SOI PP", "S-CC 2")] == pytest.approx(cost(UNet(TINY, "S-CC 2"), 62.5).mmac_per_s, rel=1e-6)
    assert mmac[("windowed", "STMC")] > mmac[("STMC", "STMC")]  # re-running the window costs more


def test_phases_are_averaged_over_the_schedule():
    result = bench(TINY, ("S-CC 2",), ("torchscript",), windowed=False, exact_strided=False, check_onnx=False, timing=BenchTiming(rounds=2, frames_per_round=4, warmup_rounds=1))
    (row,) = result["rows"]
    assert len(row["phase_ms"]) == 2  # the computed and the skipped frame of the stride-2 pair
    assert row["step_ms_avg_over_phases"] == pytest.approx(sum(row["phase_ms"]) / 2)
    assert row["step_ms_peak_phase"] == max(row["phase_ms"])


def test_unknown_form_is_named():
    with pytest.raises(ValueError, match="unknown form 'tflite'; valid: " + ", ".join(FORMS)):
        bench(TINY, ("STMC",), ("tflite",))


def test_bench_models_times_any_streaming_model_and_its_reference_has_the_convolutions_macs():
    """A converted GhostNet (frame-wise 1x1 convolutions on pooled values among its layers): every
    convolution's matrix product of the reference does that layer's MACs per frame."""
    from soi.analysis.bench import bench_models, layer_gemm_shapes
    from soi.analysis.cost import analyze
    from soi.models.ghostnet import ghostnet, streaming_ghostnet

    model = streaming_ghostnet(ghostnet(width=0.1, num_classes=3, time_strides=False).eval(), "STMC", (1, 16)).eval()
    shapes = layer_gemm_shapes(model, (1, 1, 1, 16))
    conv_macs = sum(w.macs_per_frame for w in analyze(model, dense=True) if w.kind == "conv")  # every tap, as the products
    assert sum(m * k * n for _, m, k, n in shapes) == conv_macs, "the reference's products do the convolutions' MACs"
    result = bench_models({"ghostnet": ("STMC", model)}, ("eager",), check_onnx=False, timing=BenchTiming(rounds=1, frames_per_round=2, warmup_rounds=0))
    (row,) = result["rows"]
    assert (row["variant"], row["form"], row["pattern"]) == ("ghostnet", "eager", "STMC")
    with pytest.raises(ValueError, match="at least one model"):
        bench_models({})
