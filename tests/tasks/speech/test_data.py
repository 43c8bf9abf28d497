"""Audio IO, resampling, the DNS / paired data sets and the offline data-set generator."""

from __future__ import annotations

import json
import math
import shutil
from pathlib import Path

import numpy as np
import pytest
import soundfile as sf
import torch

from soi.tasks.speech import data as D

SR = 16000


def _tone(seconds: float, sr: int = SR, freq: float = 440.0, channels: int = 1) -> np.ndarray:
    t = np.arange(int(seconds * sr)) / sr
    x = 0.5 * np.sin(2 * np.pi * freq * t)
    return np.stack([x, 0.5 * x], axis=1) if channels == 2 else x


# -- IO -------------------------------------------------------------------------------------------


def test_write_read_round_trip(tmp_path):
    x = torch.from_numpy(_tone(0.5)).float()
    path = D.write_wav(tmp_path / "sub" / "a.wav", x, SR)
    wave, sr, notes = D.read_wav(path)
    assert sr == SR and notes == [] and wave.dtype == torch.float32 and wave.shape == x.shape
    assert (wave - x).abs().max() < 1e-4  # PCM16 quantisation
    assert sf.info(str(path)).subtype == "PCM_16"


def test_write_refuses_to_overwrite_without_force(tmp_path):
    path = tmp_path / "a.wav"
    D.write_wav(path, torch.zeros(100), SR)
    with pytest.raises(FileExistsError, match="--force"):
        D.write_wav(path, torch.ones(100) * 0.1, SR)
    D.write_wav(path, torch.ones(100) * 0.1, SR, overwrite=True)
    assert D.read_wav(path)[0].abs().max() > 0.09


def test_write_refuses_non_finite(tmp_path):
    with pytest.raises(ValueError, match="non-finite"):
        D.write_wav(tmp_path / "a.wav", torch.tensor([0.0, float("nan")]), SR)
    assert not (tmp_path / "a.wav").exists()


def test_read_errors(tmp_path):
    with pytest.raises(FileNotFoundError):
        D.read_wav(tmp_path / "missing.wav")
    corrupt = tmp_path / "corrupt.wav"
    corrupt.write_bytes(b"RIFF\x10\x00\x00\x00WAVEnot really audio at all" * 3)
    with pytest.raises(D.AudioFileError, match="corrupt"):
        D.read_wav(corrupt)
    empty = tmp_path / "empty.wav"
    empty.write_bytes(b"")
    with pytest.raises(D.AudioFileError, match="empty"):
        D.read_wav(empty)
    no_samples = tmp_path / "no_samples.wav"
    sf.write(str(no_samples), np.zeros(0, dtype=np.float32), SR)
    with pytest.raises(D.AudioFileError, match="no samples"):
        D.read_wav(no_samples)
    nan = tmp_path / "nan.wav"
    sf.write(str(nan), np.array([0.0, 0.1, np.nan, 0.2], dtype=np.float32), SR, subtype="FLOAT")
    with pytest.raises(D.AudioFileError, match="non-finite.*sample 2"):
        D.read_wav(nan)


def test_read_resamples_and_downmixes_with_notes(tmp_path):
    path = tmp_path / "stereo44k.wav"
    sf.write(str(path), _tone(1.0, 44100, channels=2), 44100)
    wave, sr, notes = D.read_wav(path)
    assert sr == SR and wave.shape == (SR,)
    assert any("downmixed 2 channels" in n for n in notes)
    assert any("resampled from 44100 Hz to 16000 Hz" in n for n in notes)
    ref = 0.75 * 0.5 * np.sin(2 * np.pi * 440 * np.arange(SR) / SR)
    assert np.abs(wave.numpy() - ref)[1000:-1000].max() < 1e-3
    native, sr, notes = D.read_wav(path, sample_rate=None)
    assert sr == 44100 and native.shape == (44100,) and len(notes) == 1


@pytest.mark.parametrize("orig,new", [(44100, 16000), (8000, 16000), (22050, 16000), (16001, 16000)])
def test_resample_accuracy(orig, new):
    n = orig // 2
    x = torch.sin(2 * math.pi * 1000 * torch.arange(n, dtype=torch.float64) / orig)
    y = D.resample(x, orig, new)
    assert y.shape == (math.ceil(n * new / orig),) and y.dtype == torch.float64
    ref = torch.sin(2 * math.pi * 1000 * torch.arange(y.shape[0], dtype=torch.float64) / new)
    assert (y - ref)[new // 20 : -new // 20].abs().max() < 1e-4


def test_resample_removes_content_above_the_new_nyquist():
    x = torch.sin(2 * math.pi * 10000 * torch.arange(44100, dtype=torch.float64) / 44100)
    y = D.resample(x, 44100, SR)
    assert y[SR // 10 : -SR // 10].abs().max() < 1e-3


# -- data sets ------------------------------------------------------------------------------------


@pytest.fixture
def dns_dirs(tmp_path):
    clean, noise = tmp_path / "clean", tmp_path / "noise"
    clean.mkdir()
    noise.mkdir()
    rng = np.random.default_rng(0)
    sf.write(str(clean / "a.wav"), 0.1 * rng.standard_normal(3 * SR), SR)
    sf.write(str(clean / "b.wav"), 0.1 * rng.standard_normal(SR // 2), SR)  # shorter than a segment
    sf.write(str(clean / "c.wav"), 0.1 * rng.standard_normal((2 * 8000, 2)), 8000)  # 8 kHz stereo
    sf.write(str(noise / "n1.wav"), 0.05 * rng.standard_normal(SR // 3), SR)  # looped
    sf.write(str(noise / "n2.flac"), 0.05 * rng.standard_normal(5 * 22050), 22050)
    return clean, noise


def test_dns_folder_dataset(dns_dirs):
    clean_dir, noise_dir = dns_dirs
    ds = D.DNSFolderDataset(clean_dir, noise_dir, segment_seconds=1.0, snr_range_db=(0, 10), seed=3, length=6)
    assert len(ds) == 6
    for i in range(len(ds)):
        noisy, clean = ds[i]
        assert noisy.shape == clean.shape == (SR,) and noisy.dtype == clean.dtype == torch.float32
        noise = (noisy - clean).double()
        snr = 10 * torch.log10(clean.double().square().sum() / noise.square().sum())
        assert -0.01 <= float(snr) <= 10.01
    again = D.DNSFolderDataset(clean_dir, noise_dir, segment_seconds=1.0, snr_range_db=(0, 10), seed=3, length=6)
    assert all(torch.equal(ds[i][0], again[i][0]) for i in range(6))
    other = D.DNSFolderDataset(clean_dir, noise_dir, segment_seconds=1.0, snr_range_db=(0, 10), seed=4, length=6)
    assert not torch.equal(ds[0][0], other[0][0])
    assert len(D.DNSFolderDataset(clean_dir, noise_dir)) == 3  # one item per clean file by default
    with pytest.raises(IndexError):
        ds[6]


def test_dns_folder_dataset_reports_missing_files(tmp_path, dns_dirs):
    (tmp_path / "nothing").mkdir()
    with pytest.raises(FileNotFoundError, match="no noise audio files"):
        D.DNSFolderDataset(dns_dirs[0], tmp_path / "nothing")


def _write_pairs(noisy_dir: Path, clean_dir: Path, names_noisy, names_clean, seconds: float = 0.5):
    rng = np.random.default_rng(1)
    for folder, names in ((noisy_dir, names_noisy), (clean_dir, names_clean)):
        folder.mkdir(parents=True, exist_ok=True)
        for name in names:
            sf.write(str(folder / name), 0.1 * rng.standard_normal(int(seconds * SR)), SR)


def test_paired_folder_dataset(tmp_path):
    _write_pairs(tmp_path / "noisy", tmp_path / "clean", ["x.wav", "y.wav"], ["y.wav", "x.wav"])
    ds = D.PairedFolderDataset(tmp_path / "noisy", tmp_path / "clean")
    assert len(ds) == 2 and [p[0].name for p in ds.pairs] == ["x.wav", "y.wav"]
    noisy, clean = ds[0]
    assert noisy.shape == clean.shape == (SR // 2,)
    seg = D.PairedFolderDataset(tmp_path / "noisy", tmp_path / "noisy", segment_seconds=0.25, seed=2)
    a, b = seg[1]
    assert a.shape == (SR // 4,) and torch.equal(a, b)  # same window of both halves


def test_paired_folder_dataset_lists_unmatched_files(tmp_path):
    _write_pairs(tmp_path / "noisy", tmp_path / "clean", ["a.wav", "b.wav", "c.wav"], ["a.wav", "d.wav"])
    with pytest.raises(ValueError) as err:
        D.PairedFolderDataset(tmp_path / "noisy", tmp_path / "clean")
    msg = str(err.value)
    assert "2 noisy file(s) without a clean partner" in msg and "b.wav" in msg and "c.wav" in msg
    assert "1 clean file(s) without a noisy partner" in msg and "d.wav" in msg


def test_paired_folder_dataset_matches_dns_fileids(tmp_path):
    _write_pairs(
        tmp_path / "noisy",
        tmp_path / "clean",
        ["book_01_snr3_fileid_7.wav", "door_snr0_fileid_12.wav"],
        ["clean_fileid_12.wav", "clean_fileid_7.wav"],
    )
    ds = D.PairedFolderDataset(tmp_path / "noisy", tmp_path / "clean")
    assert {(n.name, c.name) for n, c in ds.pairs} == {
        ("book_01_snr3_fileid_7.wav", "clean_fileid_7.wav"),
        ("door_snr0_fileid_12.wav", "clean_fileid_12.wav"),
    }


def test_mix_at_snr_scales_noise_and_avoids_clipping():
    g = torch.Generator().manual_seed(0)
    clean, noise = 0.1 * torch.randn(SR, generator=g), torch.randn(SR, generator=g)
    noisy, c = D.mix_at_snr(clean, noise, 5.0)
    assert torch.equal(c, clean) or noisy.abs().max() <= 0.99 + 1e-6
    snr = 10 * torch.log10(c.double().square().sum() / (noisy - c).double().square().sum())
    assert float(snr) == pytest.approx(5.0, abs=1e-3)
    loud, c2 = D.mix_at_snr(clean * 9, noise, -5.0)
    assert loud.abs().max() <= 0.99 + 1e-6 and not torch.equal(c2, clean * 9)


# -- the generator --------------------------------------------------------------------------------

needs_tts = pytest.mark.skipif(
    shutil.which("espeak-ng") is None or shutil.which("flite") is None,
    reason="espeak-ng and flite are not installed (apt-get install espeak-ng flite)",
)


@pytest.fixture(scope="module")
def tiny_sets(tmp_path_factory):
    if shutil.which("espeak-ng") is None or shutil.which("flite") is None:
        pytest.skip("espeak-ng and flite are not installed (apt-get install espeak-ng flite)")
    from soi.tasks.speech.generate import generate_dataset

    root = tmp_path_factory.mktemp("generated")
    return {
        name: generate_dataset(root / name, minutes=0.2, seed=seed, progress=False, workers=2)
        for name, seed in (("a", 0), ("b", 0), ("c", 1))
    }


def _files(root: Path) -> dict[str, bytes]:
    return {p.relative_to(root).as_posix(): p.read_bytes() for p in sorted(root.rglob("*.wav"))}


@needs_tts
def test_generator_is_deterministic(tiny_sets):
    a, b, c = (_files(tiny_sets[k]) for k in "abc")
    assert len(a) == 6  # 3 items (train, valid, test) x noisy/clean
    assert a == b
    assert a.keys() == c.keys() and a != c
    ma, mb = (json.loads((tiny_sets[k] / "manifest.json").read_text()) for k in "ab")
    assert ma["splits"] == mb["splits"]


@needs_tts
def test_generator_splits_are_disjoint(tiny_sets):
    manifest = json.loads((tiny_sets["a"] / "manifest.json").read_text())
    splits = manifest["splits"]
    assert manifest["params"]["minutes"] == 0.2 and manifest["params"]["seed"] == 0
    for key in ("voices", "noise_sources"):
        train, valid, test = (set(splits[s][key]) for s in ("train", "valid", "test"))
        assert test and train and valid
        assert not test & train and not test & valid and not valid & train, key
    for split in splits.values():
        for item in split["items"]:
            assert item["speech"]["voice"] in split["voices"]
            assert -5 <= item["snr_db"] <= 15
            for layer in item["noise"]:
                assert layer["source"] in split["noise_sources"]
                for talker in layer.get("talkers", ()):
                    assert talker["voice"] in split["voices"]
    # The test split's noise sources include a real recording category when the package is there.
    if any(s.startswith("real:") for s in manifest["params"]["noise_sources"]):
        assert any(s.startswith("real:") for s in splits["test"]["noise_sources"])


@needs_tts
def test_generated_set_reads_back_and_is_reused(tiny_sets):
    from soi.tasks.speech.generate import generate_dataset

    root = tiny_sets["a"]
    ds = D.DefaultDataset(root, "test")
    noisy, clean = ds[0]
    assert noisy.shape == clean.shape == (4 * SR,)
    assert 0 < clean.abs().max() < 1 and not torch.equal(noisy, clean)
    stamp = (root / "manifest.json").stat().st_mtime_ns
    assert generate_dataset(root, minutes=0.2, seed=0, progress=False) == root
    assert (root / "manifest.json").stat().st_mtime_ns == stamp


def test_generator_refuses_foreign_folders(tmp_path):
    from soi.tasks.speech.generate import generate_dataset

    if shutil.which("espeak-ng") is None or shutil.which("flite") is None:
        pytest.skip("espeak-ng and flite are not installed")
    (tmp_path / "train").mkdir()
    (tmp_path / "train" / "mine.txt").write_text("not a data set")
    with pytest.raises(FileExistsError, match="holds no soi data set"):
        generate_dataset(tmp_path, minutes=0.1, progress=False)
    assert (tmp_path / "train" / "mine.txt").exists()


def test_default_dataset_explains_missing_set(tmp_path):
    with pytest.raises(FileNotFoundError, match="soi generate"):
        D.DefaultDataset(tmp_path, "test")


def test_sentences_are_plain_english():
    from soi.tasks.speech.generate import make_sentence

    rng = np.random.default_rng(0)
    sentences = [make_sentence(rng) for _ in range(200)]
    assert len(set(sentences)) > 150
    for s in sentences:
        assert s[0].isupper() and s[-1] in ".?" and "  " not in s
