"""Every command with the mistakes a user makes, through the real entry point (``soi.cli.main`` in
process, and ``python3 -m soi`` in a subprocess): the exit status, one line naming the problem (no
traceback), and that no file that was there before changed (content, mode, kind, link target).

The cases follow issue 12's "Why" list (file safety, tracebacks, silent wrong results, long work)
plus odd inputs of our own: truncated, empty, header-only and non-finite WAVs, FIFOs, links, a
read-only folder, files in the way of folders, empty and huge values. Everything is tiny (a model
of a few thousand weights, quarter-second files), so the whole file runs in seconds.
"""

from __future__ import annotations

import hashlib
import io
import json
import os
import re
import shutil
import stat
import subprocess
import sys
import threading
from collections.abc import Callable
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from soi.cli import main
from soi.files import WrittenFiles, check_output_file, write_file
from soi.models.unet import UNetConfig
from soi.tasks.speech.masker import SpectralMasker, SpeechEnhancer, save_checkpoint

RATE = 16000
TINY = {"freq_bins": 65, "in_channels": 2, "out_channels": 2, "channels": [4, 4, 8], "kernel": [3, 5], "freq_stride": 2, "lookahead": 0}
needs_tts = pytest.mark.skipif(
    shutil.which("espeak-ng") is None or shutil.which("flite") is None,
    reason="espeak-ng and flite are not installed (apt-get install espeak-ng flite)",
)


# -- helpers --------------------------------------------------------------------------------------


def snapshot(*roots: Path) -> dict[str, tuple]:
    """Every entry under ``roots``: kind, mode and content hash (a link: its target; links and
    FIFOs are not followed or read)."""
    out: dict[str, tuple] = {}
    for root in roots:
        for dirpath, dirnames, filenames in os.walk(root):
            for name in [*dirnames, *filenames]:
                path = os.path.join(dirpath, name)
                st = os.lstat(path)
                if stat.S_ISREG(st.st_mode):
                    content = hashlib.sha256(Path(path).read_bytes()).hexdigest()
                elif stat.S_ISLNK(st.st_mode):
                    content = os.readlink(path)
                else:
                    content = None
                out[path] = (stat.S_IFMT(st.st_mode), stat.S_IMODE(st.st_mode), content)
    return out


def soi(capsys, *argv: str) -> tuple[int, str, str]:
    code = main([str(a) for a in argv])
    out, err = capsys.readouterr()
    return code, out, err


def _speech(n: int, seed: int = 0) -> np.ndarray:
    rng = np.random.default_rng(seed)
    t = np.arange(n) / RATE
    return (0.2 * np.sin(2 * np.pi * rng.uniform(100, 250) * t) + 0.05 * rng.standard_normal(n)).astype(np.float32)


def wav(path: Path, seconds: float = 0.25, subtype: str = "PCM_16", seed: int = 0) -> Path:
    sf.write(path, _speech(int(seconds * RATE), seed), RATE, subtype=subtype)
    return path


def _enhancer(pattern: str = "STMC", **unet_kwargs) -> SpeechEnhancer:
    torch.manual_seed(0)
    return SpeechEnhancer(SpectralMasker(UNetConfig(**TINY), pattern, **unet_kwargs), n_fft=128, hop=32).eval()


@pytest.fixture(scope="module")
def shared(tmp_path_factory) -> Path:
    """Checkpoints, a paired data set and a two-step training run, made once for the module."""
    root = tmp_path_factory.mktemp("shared")
    save_checkpoint(root / "tiny.pt", _enhancer())
    save_checkpoint(root / "learned.pt", _enhancer("S-CC 2", upsampler="transposed"))
    for split in ("train", "valid", "test"):
        for kind in ("noisy", "clean"):
            (root / "data" / split / kind).mkdir(parents=True)
        for i in range(2):
            clean = _speech(RATE // 4, i)
            sf.write(root / "data" / split / "clean" / f"{i}.wav", clean, RATE)
            sf.write(root / "data" / split / "noisy" / f"{i}.wav", clean + 0.05, RATE)
    (root / "tiny.json").write_text(json.dumps(TINY))
    (root / "wide.json").write_text(json.dumps({**TINY, "channels": [4, 8, 8]}))
    run = ["train", "--data", root / "data", "--model-config", root / "tiny.json", "--out", root / "run", "--pattern", "S-CC 2"]
    assert main([str(a) for a in [*run, "--steps", "2", "--batch-size", "2", "--segment-seconds", "0.1", "--valid-every", "2", "--quiet"]]) == 0
    return root


@pytest.fixture(scope="module")
def dataset(tmp_path_factory) -> Path:
    """A data set made by soi generate (3 items of a quarter second)."""
    if shutil.which("espeak-ng") is None or shutil.which("flite") is None:
        pytest.skip("espeak-ng and flite are not installed (apt-get install espeak-ng flite)")
    root = tmp_path_factory.mktemp("generated") / "set"
    assert main(["generate", str(root), "--minutes", "0.02", "--segment-seconds", "0.25", "--workers", "2", "--quiet"]) == 0
    return root


GENERATE = ["--minutes", "0.02", "--segment-seconds", "0.25", "--workers", "2", "--quiet"]


class Env:
    """What a case builds its command line from: ``tmp`` (the test's folder), ``shared`` and, on
    first use, the generated ``dataset``."""

    def __init__(self, tmp: Path, shared: Path, request: pytest.FixtureRequest) -> None:
        self.tmp, self.shared, self._request = tmp, shared, request
        self.ckpt = str(shared / "tiny.pt")
        self.input = str(wav(tmp / "in.wav"))
        self.roots = [tmp, shared]

    @property
    def dataset(self) -> Path:
        root = self._request.getfixturevalue("dataset")
        self.roots.append(root)
        return root

    def enhance(self, noisy: str | Path | None = None, output: str | Path | None = None, *extra: str) -> list:
        return ["enhance", noisy or self.input, "-o", self.tmp / "out.wav" if output is None else output, "--checkpoint", self.ckpt, *extra]

    def file(self, name: str, data: bytes = b"precious") -> Path:
        path = self.tmp / name
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        return path


def _readonly_folder(env: Env) -> Path:
    """A folder nobody can create files in, root included (the immutable flag), or a skip."""
    folder = env.tmp / "readonly"
    folder.mkdir()
    if os.geteuid() != 0:
        folder.chmod(0o555)
        return folder
    if shutil.which("chattr") is None or subprocess.run(["chattr", "+i", str(folder)], check=False, capture_output=True).returncode != 0:
        pytest.skip("running as root where the immutable flag is not available: no folder is read-only to root")
    return folder


def _fifo(env: Env, name: str = "pipe.wav") -> Path:
    path = env.tmp / name
    os.mkfifo(path)
    return path


def _cut_short_wav(path: Path, fraction: float = 0.5) -> Path:
    data = wav(path, seconds=0.5).read_bytes()
    path.write_bytes(data[: int(len(data) * fraction)])
    return path


def _symlink(env: Env, name: str, target: str | Path) -> Path:
    link = env.tmp / name
    link.symlink_to(target)
    return link


def _json(env: Env, name: str, value) -> Path:
    return env.file(name, json.dumps(value).encode())


# -- refusals: exit 2, one line, nothing changed ----------------------------------------------------

Case = Callable[[Env], list]
CASES: list = [
    # usage and option values, checked while parsing
    ("enhance-threads-0", lambda e: e.enhance(None, None, "--threads", "0"), r"--threads: expected an integer >= 1, got '0'"),
    ("enhance-chunk-frames-0", lambda e: e.enhance(None, None, "--chunk-frames", "0"), r"--chunk-frames: expected an integer >= 1"),
    ("enhance-pattern-empty", lambda e: e.enhance(None, None, "--pattern", ""), r"--pattern: expected an SOI pattern .*got ''"),
    ("enhance-pattern-blank", lambda e: e.enhance(None, None, "--pattern", "  "), r"--pattern: expected an SOI pattern"),
    ("enhance-unknown-option", lambda e: e.enhance(None, None, "--bogus"), r"unrecognized arguments: --bogus"),
    ("enhance-no-output", lambda e: ["enhance", e.input], r"the following arguments are required: -o/--output"),
    ("bench-threads-0", lambda e: ["bench", "--threads", "0"], r"--threads: expected an integer >= 1"),
    ("bench-rounds-0", lambda e: ["bench", "--rounds", "0"], r"--rounds: expected an integer >= 1"),
    ("bench-block-warmup-negative", lambda e: ["bench", "--block-warmup", "-1"], r"--block-warmup: expected an integer >= 0"),
    ("bench-pattern-empty", lambda e: ["bench", "--pattern", ""], r"--pattern: expected an SOI pattern"),
    ("demo-threads-0", lambda e: ["demo", "--threads", "0"], r"--threads: expected an integer >= 1"),
    ("demo-example-negative", lambda e: ["demo", "--example", "-1"], r"--example: expected an integer >= 0"),
    ("check-frames-0", lambda e: ["check", "--frames", "0"], r"--frames: expected an integer from 1 to 20000, got '0'"),
    ("check-frames-huge", lambda e: ["check", "--frames", str(10**12)], r"--frames: expected an integer from 1 to 20000"),
    ("check-frames-text", lambda e: ["check", "--frames", "many"], r"--frames: expected an integer, got 'many'"),
    ("check-seed-negative", lambda e: ["check", "--seed", "-1"], r"--seed: expected a seed between 0 and"),
    ("cost-frame-rate-nan", lambda e: ["cost", "--frame-rate", "nan"], r"--frame-rate: expected a finite number, got 'nan'"),
    ("cost-frame-rate-inf", lambda e: ["cost", "--frame-rate", "inf"], r"--frame-rate: expected a finite number"),
    ("cost-frame-rate-0", lambda e: ["cost", "--frame-rate", "0"], r"--frame-rate: expected a number > 0"),
    ("cost-pattern-empty", lambda e: ["cost", "--pattern", ""], r"--pattern: expected an SOI pattern"),
    ("evaluate-limit-0", lambda e: ["evaluate", "--limit", "0"], r"--limit: expected an integer >= 1, got '0'"),
    ("evaluate-limit-negative", lambda e: ["evaluate", "--limit", "-3"], r"--limit: expected an integer >= 1"),
    ("export-opset-5", lambda e: ["export", e.ckpt, "-o", e.tmp / "onnx", "--opset", "5"], r"--opset: expected an integer from 18 to \d+, got '5'"),
    ("export-opset-huge", lambda e: ["export", e.ckpt, "-o", e.tmp / "onnx", "--opset", "999"], r"--opset: expected an integer from 18"),
    ("export-batch-0", lambda e: ["export", e.ckpt, "-o", e.tmp / "onnx", "--batch", "0"], r"--batch: expected an integer >= 1"),
    ("export-check-steps-negative", lambda e: ["export", e.ckpt, "-o", e.tmp / "onnx", "--check-steps", "-1"], r"--check-steps: expected an integer >= 0"),
    ("export-pattern-empty", lambda e: ["export", e.ckpt, "-o", e.tmp / "onnx", "--pattern", ""], r"--pattern: expected an SOI pattern"),
    ("generate-minutes-0", lambda e: ["generate", e.tmp / "set", "--minutes", "0"], r"--minutes: expected a number > 0"),
    ("generate-minutes-nan", lambda e: ["generate", e.tmp / "set", "--minutes", "nan"], r"--minutes: expected a finite number"),
    ("generate-segment-huge", lambda e: ["generate", e.tmp / "set", "--segment-seconds", "1e9"], r"--segment-seconds: expected a number > 0 and <= 600"),
    ("generate-snr-nan", lambda e: ["generate", e.tmp / "set", "--snr", "0", "nan"], r"--snr: expected a finite number"),
    ("generate-workers-0", lambda e: ["generate", e.tmp / "set", "--workers", "0"], r"--workers: expected an integer >= 1"),
    ("generate-seed-huge", lambda e: ["generate", e.tmp / "set", "--seed", str(2**40)], r"--seed: expected a seed between 0 and 4294967295"),
    ("train-batch-size-0", lambda e: ["train", "--batch-size", "0"], r"--batch-size: expected an integer >= 1"),
    ("train-lr-nan", lambda e: ["train", "--lr", "nan"], r"--lr: expected a finite number"),
    ("train-steps-0", lambda e: ["train", "--steps", "0"], r"--steps: expected an integer >= 1"),
    ("train-pattern-empty", lambda e: ["train", "--pattern", ""], r"--pattern: expected an SOI pattern"),
    # soi enhance: the input
    ("enhance-input-directory", lambda e: e.enhance(e.tmp), r"is a folder; give an audio file"),
    ("enhance-input-missing", lambda e: e.enhance(e.tmp / "missing.wav"), r"missing.wav: no such file"),
    ("enhance-input-fifo", lambda e: e.enhance(_fifo(e, "in-pipe.wav")), r"is not a regular file \(a pipe or a device\)"),
    ("enhance-input-empty-file", lambda e: e.enhance(e.file("empty.wav", b"")), r"the file is empty \(0 bytes\)"),
    ("enhance-input-not-audio", lambda e: e.enhance(e.file("text.wav", b"hello, this is text\n" * 20)), r"not a readable audio file"),
    ("enhance-input-header-only", lambda e: e.enhance(wav(e.tmp / "header.wav", seconds=0)), r"holds no samples"),
    ("enhance-input-nan-samples", lambda e: e.enhance(_nan_wav(e.tmp / "nan.wav")), r"non-finite \(NaN or infinite\) samples, the first at sample 100"),
    ("enhance-input-too-short", lambda e: e.enhance(wav(e.tmp / "short.wav", seconds=0.005)), r"is too short: 80 samples"),
    # soi enhance: the output
    ("enhance-output-is-input", lambda e: e.enhance(None, e.input, "--force"), r"the output .*in.wav is the input file"),
    ("enhance-output-symlink-to-input", lambda e: e.enhance(None, _symlink(e, "link.wav", e.input), "--force"), r"is the input .*in.wav \(the same file through a link\)"),
    ("enhance-output-hardlink-to-input", lambda e: e.enhance(None, _hardlink(e), "--force"), r"is the input .*in.wav \(the same file through a link\)"),
    ("enhance-output-exists", lambda e: e.enhance(None, e.file("out.wav")), r"out.wav exists; pass --force to overwrite it"),
    ("enhance-output-directory", lambda e: e.enhance(None, e.tmp, "--force"), r"the output .* is a folder; give the name of a file to write"),
    ("enhance-output-under-a-file", lambda e: e.enhance(None, e.file("plain") / "out.wav"), r"plain is a file, not a folder"),
    ("enhance-output-readonly-folder", lambda e: e.enhance(None, _readonly_folder(e) / "out.wav"), r"cannot create files in .*readonly"),
    ("enhance-output-dangling-symlink", lambda e: e.enhance(None, _symlink(e, "dangling.wav", e.tmp / "nowhere.wav"), "--force"), r"is a symbolic link to .*nowhere.wav, which does not exist"),
    ("enhance-output-unknown-extension", lambda e: e.enhance(None, e.tmp / "out.xyz"), r"cannot tell an audio format from the extension '.xyz'; use one of \.wav, \.flac$"),
    ("enhance-output-lossy-extension", lambda e: e.enhance(None, e.tmp / "out.ogg"), r"cannot tell an audio format from the extension '.ogg'; use one of \.wav, \.flac$"),
    ("enhance-output-empty-path", lambda e: e.enhance(None, ""), r"the output path is empty"),
    # checkpoints
    ("enhance-checkpoint-directory", lambda e: [*e.enhance(), "--checkpoint", e.tmp], r"the checkpoint .* is a folder; give the .pt file"),
    ("enhance-checkpoint-missing", lambda e: [*e.enhance(), "--checkpoint", e.tmp / "nope.pt"], r"checkpoint not found: .*nope.pt"),
    ("enhance-checkpoint-not-a-checkpoint", lambda e: [*e.enhance(), "--checkpoint", e.file("junk.pt")], r"is not a readable soi checkpoint"),
    ("enhance-checkpoint-other-format", lambda e: [*e.enhance(), "--checkpoint", _torch_file(e)], r"is not a soi speech checkpoint \(expected format 'soi-speech-v1', found 'other'\)"),
    ("enhance-learned-upsampler-other-pattern", lambda e: [*e.enhance(), "--checkpoint", e.shared / "learned.pt", "--pattern", "S-CC 1"], r"trained as 'S-CC 2'\) does not fit pattern 'S-CC 1'.*the 'transposed' upsampler belong to the S-CC pairs"),
    ("enhance-pattern-too-deep", lambda e: e.enhance(None, None, "--pattern", "S-CC 9"), r"level 9 is outside the network.*levels 1..3"),
    ("enhance-pattern-unknown", lambda e: e.enhance(None, None, "--pattern", "fast please"), r"SOI pattern 'fast please': unknown pattern"),
    # model configs
    ("cost-config-channels-not-integers", lambda e: ["cost", "--config", _json(e, "c.json", {**TINY, "channels": [4, 16.5, 8]})], r"UNetConfig.channels must be a list of integers, got \[4, 16.5, 8\]"),
    ("cost-config-missing", lambda e: ["cost", "--config", e.tmp / "none.json"], r"UNetConfig: no such file .*none.json"),
    ("cost-config-invalid-json", lambda e: ["cost", "--config", e.file("bad.json", b"{oops")], r"UNetConfig: invalid JSON"),
    ("cost-pattern-unknown", lambda e: ["cost", "--config", "small", "--pattern", "Bogus"], r"SOI pattern 'Bogus': unknown pattern"),
    # soi train
    ("train-json-without-data", lambda e: ["train", "--config", _json(e, "t.json", {"model_config": "x.json"}), "--out", e.tmp / "run"], r'no "data" \(the data set folder'),
    ("train-json-not-an-object", lambda e: ["train", "--config", _json(e, "t.json", [1, 2])], r"expected a JSON object of training options, got list"),
    ("train-json-wrong-type", lambda e: ["train", "--config", _json(e, "t.json", {"data": "d", "batch_size": "8"})], r"TrainConfig.batch_size must be an integer >= 1, got '8'"),
    ("train-json-unknown-option", lambda e: ["train", "--config", _json(e, "t.json", {"data": "d", "speed": 2})], r"unknown training options \['speed'\]"),
    ("train-resume-other-pattern", lambda e: [*_resume(e), "--pattern", "STMC"], r"last.pt was trained with another model than this run asks for \(pattern 'S-CC 2' -> 'STMC'\)"),
    ("train-resume-other-model-config", lambda e: [*_resume(e, "wide.json"), "--pattern", "S-CC 2"], r"another model .*\(channels \(4, 4, 8\) -> \(4, 8, 8\)\).*--model-config '.*tiny.json'"),
    ("train-resume-other-upsampler", lambda e: [*_resume(e), "--pattern", "S-CC 2", "--upsampler", "transposed"], r"upsampler 'duplicate' -> 'transposed'"),
    ("train-no-resume-over-a-run", lambda e: [*_resume(e), "--pattern", "S-CC 2", "--no-resume"], r"already holds last.pt, best.pt, log.csv of an earlier run.*--force"),
    ("train-out-is-a-file", lambda e: ["train", "--data", e.shared / "data", "--out", e.file("run")], r"the output folder .*run is a file; give a folder"),
    ("train-data-missing", lambda e: ["train", "--data", e.tmp / "nodata", "--out", e.tmp / "run", "--model-config", e.shared / "tiny.json"], r"must contain noisy/ and clean/"),
    # soi export
    ("export-output-is-a-file", lambda e: ["export", e.ckpt, "-o", e.file("model.onnx")], r"the output folder .*model.onnx is a file; give a folder"),
    ("export-output-is-the-checkpoint", lambda e: ["export", e.ckpt, "-o", e.ckpt], r"the output folder .*tiny.pt is a file"),
    ("export-output-under-a-file", lambda e: ["export", e.ckpt, "-o", e.file("plain") / "onnx"], r"plain is a file, not a folder"),
    ("export-output-not-empty", lambda e: ["export", e.ckpt, "-o", e.file("onnx/notes.txt").parent], r"exists and is not empty \(use overwrite=True / --force\)"),
    ("export-checkpoint-missing", lambda e: ["export", e.tmp / "nope.pt", "-o", e.tmp / "onnx"], r"checkpoint not found"),
    # soi evaluate
    ("evaluate-json-exists", lambda e: ["evaluate", "--checkpoint", e.ckpt, "--data", e.shared / "data", "--json", e.file("r.json")], r"r.json exists; pass --force"),
    ("evaluate-json-is-a-folder", lambda e: ["evaluate", "--checkpoint", e.ckpt, "--data", e.shared / "data", "--json", e.tmp], r"is a folder; give the name of a file"),
    ("evaluate-json-is-the-checkpoint", lambda e: ["evaluate", "--checkpoint", e.ckpt, "--data", e.shared / "data", "--json", e.ckpt, "--force"], r"tiny.pt is the input file"),
    ("evaluate-data-missing", lambda e: ["evaluate", "--checkpoint", e.ckpt, "--data", e.tmp / "nodata"], r"must contain noisy/ and clean/"),
    # soi generate
    ("generate-out-is-a-file", lambda e: ["generate", e.file("set"), *GENERATE], r"the output folder .*set is a file; give a folder"),
    ("generate-foreign-folder", lambda e: ["generate", e.file("mine/notes.txt").parent, *GENERATE], r"is not empty \(notes.txt\) and holds no soi data set.*--force"),
    ("generate-foreign-split-folder", lambda e: ["generate", e.file("mine/train/a.wav").parent.parent, *GENERATE], r"is not empty \(train\) and holds no soi data set"),
    ("generate-other-parameters", lambda e: ["generate", e.dataset, *GENERATE, "--seed", "1"], r"holds a soi data set made with other parameters \(seed 0 -> 1\); pass --force"),
    ("generate-needs-more-space-than-free", lambda e: ["generate", e.tmp / "set", "--minutes", "1e12"], r"needs about .* GB, but .* has .* GB free"),
    # soi demo
    ("demo-example-out-of-range", lambda e: ["demo", "--data", e.dataset, "--example", "9999", "--out", e.tmp / "demo"], r"example 9999 is out of range: the test split of .* has 1 example\(s\), 0 to 0"),
    ("demo-out-is-a-file", lambda e: ["demo", "--out", e.file("demo")], r"the output folder .*demo is a file; give a folder"),
    ("demo-foreign-file-in-out", lambda e: ["demo", "--data", e.dataset, "--out", e.file("demo/clean.wav").parent], r"clean.wav exists and soi did not write it; pass --force"),
]  # fmt: skip


def _nan_wav(path: Path) -> Path:
    x = _speech(RATE // 4)
    x[100] = np.nan
    sf.write(path, x, RATE, subtype="FLOAT")
    return path


def _hardlink(env: Env) -> Path:
    link = env.tmp / "hard.wav"
    os.link(env.input, link)
    return link


def _torch_file(env: Env) -> Path:
    path = env.tmp / "other.pt"
    torch.save({"format": "other", "weights": torch.zeros(2)}, path)
    return path


def _resume(env: Env, model_config: str = "tiny.json") -> list:
    s = env.shared
    return ["train", "--data", s / "data", "--out", s / "run", "--model-config", s / model_config, "--steps", "4", "--quiet"]


NEEDS_TTS = {"generate-foreign-folder", "generate-foreign-split-folder", "generate-needs-more-space-than-free"}
"""Cases whose check comes after the installed voices are listed (the data set depends on them)."""


@pytest.mark.parametrize(
    "make_argv,expected", [pytest.param(m, x, id=i, marks=[needs_tts] if i in NEEDS_TTS else []) for i, m, x in CASES]
)
def test_refused_with_one_line_and_nothing_changed(make_argv, expected, tmp_path, shared, request, capsys):
    env = Env(tmp_path, shared, request)
    argv = make_argv(env)
    roots = env.roots
    before = snapshot(*roots)
    try:
        code, out, err = soi(capsys, *argv)
    finally:
        if (tmp_path / "readonly").is_dir() and os.geteuid() == 0:
            subprocess.run(["chattr", "-i", str(tmp_path / "readonly")], check=False, capture_output=True)
    command = argv[0]
    assert code == 2, (code, out, err)
    assert "Traceback" not in err and err.count("\n") == 1, err
    assert err.startswith(f"soi {command}: error: "), err
    assert re.search(expected, err), err
    assert snapshot(*roots) == before, "a file changed, appeared or vanished"


# -- what is done instead of a silent wrong result ---------------------------------------------------


@pytest.mark.parametrize(
    "subtype,output,want_format,want_subtype",
    [
        pytest.param("PCM_24", "out.wav", "WAV", "PCM_24", id="24-bit-wav-stays-24-bit"),
        pytest.param("FLOAT", "out.wav", "WAV", "FLOAT", id="float-wav-stays-float"),
        pytest.param("PCM_16", "out.wav", "WAV", "PCM_16", id="16-bit-wav"),
        pytest.param("PCM_24", "out.flac", "FLAC", "PCM_24", id="flac-by-extension"),
        pytest.param("FLOAT", "out.flac", "FLAC", "PCM_24", id="float-to-flac-is-24-bit"),
        pytest.param("PCM_16", "out", "WAV", "PCM_16", id="no-extension-is-wav"),
    ],
)
def test_enhance_writes_the_format_of_the_extension_in_the_input_sample_format(
    tmp_path, shared, capsys, subtype, output, want_format, want_subtype
):
    src = wav(tmp_path / "in.wav", subtype=subtype)
    code, out, err = soi(capsys, "enhance", src, "-o", tmp_path / output, "--checkpoint", shared / "tiny.pt")
    assert code == 0 and err == "", err
    info = sf.info(str(tmp_path / output))
    assert (info.format, info.subtype, info.frames) == (want_format, want_subtype, RATE // 4)
    assert f"({want_format} {want_subtype}, " in out, out


def test_enhance_cut_short_wav_is_processed_with_one_warning(tmp_path, shared, capsys):
    src = _cut_short_wav(tmp_path / "cut.wav")
    present = sf.info(str(src)).frames
    code, _, err = soi(capsys, "enhance", src, "-o", tmp_path / "out.wav", "--checkpoint", shared / "tiny.pt")
    assert code == 0, err
    assert err.count("\n") == 1 and err.startswith("soi enhance: warning: ") and "is cut short" in err, err
    assert f"using the {present} samples that are there" in err
    assert sf.info(str(tmp_path / "out.wav")).frames == present


def test_new_files_get_the_umask_mode_and_replaced_files_keep_theirs(tmp_path, shared, capsys):
    old = os.umask(0o027)
    try:
        assert soi(capsys, "enhance", wav(tmp_path / "in.wav"), "-o", tmp_path / "new.wav", "--checkpoint", shared / "tiny.pt")[0] == 0
    finally:
        os.umask(old)
    assert stat.S_IMODE(os.stat(tmp_path / "new.wav").st_mode) == 0o640
    kept = tmp_path / "kept.wav"
    kept.write_bytes(b"old")
    kept.chmod(0o604)
    assert soi(capsys, "enhance", tmp_path / "in.wav", "-o", kept, "--checkpoint", shared / "tiny.pt", "--force")[0] == 0
    assert stat.S_IMODE(os.stat(kept).st_mode) == 0o604 and kept.read_bytes()[:4] == b"RIFF"


def test_a_symlinked_output_replaces_the_file_it_names_and_stays_a_link(tmp_path, shared, capsys):
    target = tmp_path / "real.wav"
    target.write_bytes(b"old")
    link = tmp_path / "link.wav"
    link.symlink_to(target)
    assert soi(capsys, "enhance", wav(tmp_path / "in.wav"), "-o", link, "--checkpoint", shared / "tiny.pt", "--force")[0] == 0
    assert link.is_symlink() and os.readlink(link) == str(target)
    assert sf.info(str(target)).frames == RATE // 4
    assert [p.name for p in tmp_path.iterdir() if p.name.startswith(".")] == [], "a temporary file was left"


@pytest.mark.parametrize("force", [False, True], ids=["without-force", "with-force"])
def test_a_fifo_output_is_written_through_and_stays_a_fifo(tmp_path, shared, capsys, force):
    fifo = tmp_path / "pipe.wav"
    os.mkfifo(fifo)
    received = io.BytesIO()
    reader = threading.Thread(target=lambda: received.write(fifo.read_bytes()))
    reader.start()
    try:
        code, _, err = soi(capsys, "enhance", wav(tmp_path / "in.wav"), "-o", fifo, "--checkpoint", shared / "tiny.pt", *(["--force"] if force else []))
    finally:
        if reader.is_alive():  # the command failed before opening the FIFO: let the reader finish
            with open(fifo, "wb"):
                pass
        reader.join(timeout=30)
    assert code == 0, err
    assert stat.S_ISFIFO(os.lstat(fifo).st_mode)
    assert sf.info(io.BytesIO(received.getvalue())).frames == RATE // 4


def test_dev_null_stays_a_device(tmp_path, shared, capsys):
    assert soi(capsys, "enhance", wav(tmp_path / "in.wav"), "-o", "/dev/null", "--checkpoint", shared / "tiny.pt")[0] == 0
    assert stat.S_ISCHR(os.lstat("/dev/null").st_mode)


def test_python_m_soi_writes_wav_to_dev_stdout_and_the_report_to_stderr(tmp_path, shared):
    link_before = os.readlink("/dev/stdout") if os.path.islink("/dev/stdout") else None
    done = subprocess.run(
        [sys.executable, "-m", "soi", "enhance", str(wav(tmp_path / "in.wav")), "-o", "/dev/stdout", "--checkpoint", str(shared / "tiny.pt")],
        check=False, capture_output=True, timeout=120,
    )  # fmt: skip
    assert done.returncode == 0, done.stderr.decode()
    assert sf.info(io.BytesIO(done.stdout)).frames == RATE // 4, "stdout is the WAV file and nothing else"
    assert b"wrote /dev/stdout" in done.stderr
    assert (os.readlink("/dev/stdout") if os.path.islink("/dev/stdout") else None) == link_before


def test_python_m_soi_error_is_one_line(tmp_path):
    done = subprocess.run(
        [sys.executable, "-m", "soi", "enhance", str(tmp_path), "-o", str(tmp_path / "o.wav")], check=False, capture_output=True, text=True, timeout=120
    )
    assert done.returncode == 2 and done.stdout == "", done
    assert done.stderr == f"soi enhance: error: {tmp_path} is a folder; give an audio file\n", done.stderr


@pytest.mark.parametrize("position", ["before-the-command", "after-the-command"])
def test_debug_adds_the_traceback(tmp_path, capsys, position):
    argv = ["enhance", str(tmp_path), "-o", str(tmp_path / "o.wav")]
    code, _, err = soi(capsys, *(["--debug", *argv] if position == "before-the-command" else [*argv, "--debug"]))
    assert code == 2 and err.startswith("Traceback (most recent call last)"), err
    assert err.splitlines()[-1] == f"soi enhance: error: {tmp_path} is a folder; give an audio file"


def test_soi_help_and_bare_soi(capsys):
    code, out, err = soi(capsys, "--help")
    assert code == 0 and out.startswith("usage: soi") and "--debug" in out and "--quiet" in out and err == ""
    code, out, err = soi(capsys)
    assert code == 2 and out.startswith("usage: soi") and err == ""


# -- long work shows progress on a terminal only -------------------------------------------------


class _Terminal(io.StringIO):
    def isatty(self) -> bool:
        return True


@pytest.mark.parametrize("quiet", [False, True], ids=["terminal", "terminal-quiet"])
def test_enhance_progress_on_a_terminal_unless_quiet(tmp_path, shared, monkeypatch, quiet):
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    argv = ["enhance", str(wav(tmp_path / "in.wav")), "-o", str(tmp_path / "o.wav"), "--checkpoint", str(shared / "tiny.pt")]
    assert main([*argv, *(["--quiet"] if quiet else [])]) == 0
    assert ("enhance in.wav" in terminal.getvalue()) != quiet, terminal.getvalue()


def test_evaluate_progress_on_a_terminal_and_none_in_a_pipe(tmp_path, shared, monkeypatch, capsys):
    argv = ["evaluate", "--checkpoint", str(shared / "tiny.pt"), "--data", str(shared / "data"), "--json", str(tmp_path / "r.json")]
    assert main(argv) == 0
    assert "evaluate STMC" not in capsys.readouterr().err, "no progress when stderr is not a terminal"
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert main([*argv, "--force"]) == 0
    assert "evaluate STMC" in terminal.getvalue()
    assert json.loads((tmp_path / "r.json").read_text())[0]["items"] == 2


def test_export_honours_the_opset_and_shows_its_stage_on_a_terminal(tmp_path, shared, monkeypatch):
    onnx = pytest.importorskip("onnx")
    pytest.importorskip("onnxscript")
    terminal = _Terminal()
    monkeypatch.setattr(sys, "stderr", terminal)
    assert main(["export", str(shared / "tiny.pt"), "-o", str(tmp_path / "onnx"), "--opset", "19", "--check-steps", "0"]) == 0
    assert "export STMC: ONNX graphs" in terminal.getvalue()
    graphs = sorted((tmp_path / "onnx").glob("*.onnx"))
    assert graphs and {op.version for g in graphs for op in onnx.load(str(g)).opset_import if op.domain in ("", "ai.onnx")} == {19}


# -- files soi did not write are never deleted ---------------------------------------------------


@needs_tts
def test_generate_rebuild_needs_force_and_removes_only_what_it_wrote(tmp_path, capsys):
    root = tmp_path / "set"
    assert soi(capsys, "generate", root, *GENERATE)[0] == 0
    mine = root / "train" / "mine.txt"
    mine.write_text("mine")
    (root / "notes").mkdir()
    written = WrittenFiles(root).entries()
    assert "manifest.json" in written and "train/noisy/train_00000.wav" in written and "train/" in written
    assert stat.S_IMODE(os.stat(root / "train" / "noisy" / "train_00000.wav").st_mode) == 0o666 & ~_umask()
    before = (root / "test" / "noisy" / "test_00000.wav").read_bytes()
    code, _, err = soi(capsys, "generate", root, *GENERATE, "--seed", "1", "--force")
    assert code == 0, err
    assert mine.read_text() == "mine" and (root / "notes").is_dir(), "the user's files and folders stay"
    assert (root / "test" / "noisy" / "test_00000.wav").read_bytes() != before
    assert json.loads((root / "manifest.json").read_text())["params"]["seed"] == 1
    assert soi(capsys, "generate", root, *GENERATE, "--seed", "1")[0] == 0, "the same parameters: reused"


@needs_tts
def test_demo_replaces_its_own_files_only(tmp_path, dataset, capsys):
    out = tmp_path / "demo"
    assert soi(capsys, "demo", "--data", dataset, "--out", out)[0] == 0
    assert sorted(p.name for p in out.iterdir()) == [".soi-written", "clean.wav", "enhanced.wav", "noisy.wav", "spectrograms.png"]
    assert soi(capsys, "demo", "--data", dataset, "--out", out)[0] == 0, "a rerun replaces what the demo wrote"
    (out / "clean.wav").write_bytes(b"the user's own recording")
    code, _, err = soi(capsys, "demo", "--data", dataset, "--out", out)
    assert code == 2 and "clean.wav exists and soi did not write it" in err
    assert (out / "clean.wav").read_bytes() == b"the user's own recording"


def _umask() -> int:
    mask = os.umask(0)
    os.umask(mask)
    return mask


def test_written_files_record_never_reaches_outside_or_deletes_changed_files(tmp_path):
    record = WrittenFiles(tmp_path / "out")
    write_file(record.claim("a.txt"), b"soi's")
    record.written("a.txt")
    write_file(record.claim("sub/b.txt"), b"soi's")
    record.written("sub/b.txt")
    (tmp_path / "out" / "sub" / "b.txt").write_bytes(b"changed by the user")
    outside = tmp_path / "outside.txt"
    outside.write_text("keep")
    with open(record.path, "a") as f:  # a hand-edited record
        f.write(json.dumps({"path": "../outside.txt", "id": None}) + "\n")
    assert record.remove() == 1
    assert not (tmp_path / "out" / "a.txt").exists()
    assert (tmp_path / "out" / "sub" / "b.txt").read_bytes() == b"changed by the user"
    assert outside.read_text() == "keep"


def test_check_output_file_follows_a_link_to_the_file_it_names(tmp_path):
    real = tmp_path / "real.wav"
    real.write_bytes(b"x")
    (tmp_path / "link.wav").symlink_to(real)
    assert check_output_file(tmp_path / "link.wav", force=True) == real
    assert check_output_file(tmp_path / "new.wav") == tmp_path / "new.wav"
