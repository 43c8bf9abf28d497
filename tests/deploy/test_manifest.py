"""soi.deploy.manifest: the manifest's JSON round trip, its refusal of other formats, and that it,
the streamer base and the ONNX runtime import no torch."""

from __future__ import annotations

import ast
import json
from pathlib import Path

import pytest

import soi.deploy
from soi.deploy.manifest import FORMAT, MANIFEST, GraphEntry, InputEntry, Manifest, StateEntry


def _manifest() -> Manifest:
    return Manifest(
        model="UNet",
        input=InputEntry([1, 2, 1, 33], "float32"),
        warmup=[None],
        cycle=[0, 1],
        warmup_kinds=["prepare"],
        cycle_kinds=["prepare", "step"],
        graphs=[
            GraphEntry(0, "g0_prepare.onnx", "prepare", ["state.a"], ["next.b"], ["a"]),
            GraphEntry(1, "g1_step.onnx", "step", ["x", "state.a", "state.b"], ["y", "next.a"], [], [1, 2, 1, 33]),
        ],
        state=[StateEntry("a", [1, 4, 1, 9], "float32", True, 0.0), StateEntry("b", [1, 4, 1, 9], "float32", False)],
        state_bytes=288,
        metadata={"sample_rate": 16000, "latency": {"frames": 0}},
    )


def test_round_trip_and_layout(tmp_path):
    man = _manifest()
    data = man.write(tmp_path)
    on_disk = json.loads((tmp_path / MANIFEST).read_text())
    assert data == on_disk
    assert list(on_disk)[:4] == ["format", "model", "input", "frames_per_step"]
    assert on_disk["format"] == FORMAT and on_disk["frames_per_step"] == 1 and on_disk["sample_rate"] == 16000
    assert on_disk["state"][1] == {"name": "b", "shape": [1, 4, 1, 9], "dtype": "float32", "initial": False}
    back = Manifest.read(tmp_path)
    assert back == man
    assert back.graph(1).state_in == ["a", "b"] and back.graph(1).state_out == ["a"]
    with pytest.raises(KeyError):
        back.graph(7)


def test_refuses_other_formats_and_missing_files(tmp_path):
    with pytest.raises(FileNotFoundError, match="no manifest.json"):
        Manifest.read(tmp_path)
    data = _manifest().to_dict()
    data["format"] = "something-else"
    (tmp_path / MANIFEST).write_text(json.dumps(data))
    with pytest.raises(ValueError, match="is not a soi ONNX manifest"):
        Manifest.read(tmp_path)


@pytest.mark.parametrize("module", ["manifest.py", "base.py", "runtime.py"])
def test_runtime_side_imports_no_torch(module):
    tree = ast.parse((Path(soi.deploy.__file__).parent / module).read_text())
    imported = {a.name.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.Import) for a in n.names}
    imported |= {n.module.split(".")[0] for n in ast.walk(tree) if isinstance(n, ast.ImportFrom) and n.module and not n.level}
    assert "torch" not in imported, f"{module} imports torch"
