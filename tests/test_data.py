"""flexround_mcu.data: named datasets from the data folder, and the restricted CIFAR-10 batch reader."""

import os
import pickle
from pathlib import Path

import numpy as np
import pytest

from flexround_mcu.data import DATASETS, Dataset, data_root, load_cifar10_batches, load_dataset, require_file
from flexround_mcu.data.datasets import KWS_INPUT_SCALE, KWS_INPUT_ZERO_POINT
from flexround_mcu.errors import UserError
from helpers import user_error




# --- the real data ---------------------------------------------------------------------------------------------

def test_cifar10_test_5000(shared_data):
    ds = load_dataset("cifar10-test-5000")
    assert ds.name == "cifar10-test-5000" and len(ds) == 5000
    assert ds.x.shape == (5000, 32, 32, 3) and ds.x.dtype == np.uint8 and ds.y.dtype == np.int64
    for part in range(5):  # concatenated in part order: each block of 1000 is one part, 100 per class
        assert (np.bincount(ds.y[part * 1000:(part + 1) * 1000], minlength=10) == 100).all()
    assert (np.bincount(ds.y, minlength=10) == 500).all()
    part0 = np.load(shared_data / "cifar10/cifar10_test_part0.npz")
    assert (ds.x[:1000] == part0["images"]).all()
    assert (ds.real_scale, ds.real_offset) == (1.0, 0.0)
    f = ds.to_float()  # ResNet-8 takes raw 0..255 pixels
    assert f.dtype == np.float32 and (f == ds.x).all()


def test_cifar_quantize_input_is_pixel_minus_128(shared_data):
    ds = load_dataset("cifar10-test-5000")
    q = ds.quantize_input(1.0, -128)  # the reference int8 ResNet-8's input params
    assert q.dtype == np.int8 and (q.astype(np.int16) == ds.x.astype(np.int16) - 128).all()


def test_ic01(shared_data):
    ds = load_dataset("ic01")
    assert len(ds) == 200 and ds.x.shape == (200, 32, 32, 3) and ds.x.dtype == np.uint8
    assert ds.y.dtype == np.int64 and ds.y.min() >= 0 and ds.y.max() <= 9


def test_kws01(shared_data):
    ds = load_dataset("kws01")
    assert len(ds) == 1000 and ds.x.shape == (1000, 49, 10, 1) and ds.x.dtype == np.int8
    assert ds.y.dtype == np.int64 and ds.y.min() >= 0 and ds.y.max() <= 11
    assert ds.real_scale == float(np.float32(0.5847029)) and ds.real_offset == 83.0
    expected = ((ds.x.astype(np.float64) - 83) * float(np.float32(0.5847029))).astype(np.float32)
    assert (ds.to_float() == expected).all()
    # The int8 model's own input params must give back the stored features unchanged.
    assert (ds.quantize_input(KWS_INPUT_SCALE, KWS_INPUT_ZERO_POINT) == ds.x).all()


def test_calib_and_first20(shared_data):
    calib = load_dataset("cifar10-calib")
    assert len(calib) == 4000 and calib.x.shape == (4000, 32, 32, 3) and calib.x.dtype == np.uint8
    assert list(calib.y[:10]) == [6, 9, 9, 4, 1, 1, 2, 7, 8, 3]  # the known data_batch_1 label sequence
    first20 = load_dataset("cifar10-test-first20")
    assert len(first20) == 20 and first20.x.shape == (20, 32, 32, 3)


def test_limit(shared_data):
    full = load_dataset("kws01")
    ds = load_dataset("kws01", limit=7)
    assert len(ds) == 7 and (ds.x == full.x[:7]).all() and (ds.y == full.y[:7]).all()
    assert len(full.limit(3)) == 3 and len(full.limit(10**6)) == 1000
    for bad in (0, -1, 1.5, True):
        assert "limit" in user_error(load_dataset, "kws01", limit=bad)
    assert "limit" in user_error(full.limit, 0)


# --- Dataset arithmetic and names (no data needed) -------------------------------------------------------------

def test_quantize_input_rounds_half_away_and_clips():
    ds = Dataset("t", np.array([0, 1, 2, 3, 4, 5, 6, 255], np.uint8), np.zeros(8, np.int64), 1.0, 3.0)
    # real = x - 3 = -3 -2 -1 0 1 2 3 252; / 2 = -1.5 -1 -0.5 0 0.5 1 1.5 126
    assert ds.quantize_input(2.0, 0).tolist() == [-2, -1, -1, 0, 1, 1, 2, 126]
    assert ds.quantize_input(2.0, 5).tolist()[-1] == 127  # 126 + 5 clips
    assert ds.quantize_input(0.01, 0).tolist()[0] == -128
    assert "scale" in user_error(ds.quantize_input, 0.0, 0)


def test_unknown_name_lists_known_names():
    msg = user_error(load_dataset, "cifar100")
    assert "cifar100" in msg and all(n in msg for n in DATASETS)
    assert set(DATASETS) >= {"cifar10-test-5000", "ic01", "kws01", "cifar10-calib", "cifar10-test-first20",
                             "cifar10-test-full"}


def test_data_root(monkeypatch, tmp_path):
    monkeypatch.delenv("FLEXROUND_MCU_DATA", raising=False)
    assert data_root() == Path.home() / ".cache" / "flexround-mcu"
    monkeypatch.setenv("FLEXROUND_MCU_DATA", str(tmp_path))
    assert data_root() == tmp_path


def test_missing_data_folder(monkeypatch, tmp_path):
    missing = tmp_path / "nowhere"
    monkeypatch.setenv("FLEXROUND_MCU_DATA", str(missing))
    msg = user_error(load_dataset, "ic01")
    assert str(missing) in msg and "does not exist" in msg and "FLEXROUND_MCU_DATA" in msg

    monkeypatch.setenv("FLEXROUND_MCU_DATA", str(tmp_path))  # exists, but empty
    msg = user_error(load_dataset, "ic01")
    assert str(tmp_path / "mlperf_tiny/ic/ic01_perf_samples_v0.5.npz") in msg
    assert "missing" in msg and "FLEXROUND_MCU_DATA" in msg
    (tmp_path / "x.txt").write_text("")
    assert require_file("x.txt") == tmp_path / "x.txt"


def _write_first20(root: Path, writer) -> Path:
    path = root / "cifar10" / "cifar10_test_first20_lossless.npz"
    path.parent.mkdir(parents=True, exist_ok=True)
    writer(path)
    return path


@pytest.mark.parametrize("kind", ["garbage", "truncated", "npy", "object", "wrong_key", "wrong_dtype",
                                  "wrong_shape", "label_count"])
def test_bad_npz_is_user_error(monkeypatch, tmp_path, kind):
    imgs, labels = np.zeros((4, 32, 32, 3), np.uint8), np.arange(4)

    def write(path):
        if kind == "garbage":
            path.write_bytes(b"\x00garbage, not a zip" * 10)
        elif kind == "truncated":
            np.savez(path, images=np.random.default_rng(0).integers(0, 255, (50, 32, 32, 3), np.uint8),
                     labels=np.arange(50))
            path.write_bytes(path.read_bytes()[:20000])
        elif kind == "npy":
            with open(path, "wb") as f:
                np.save(f, imgs)
        elif kind == "object":
            np.savez(path, images=np.array([None] * 4, dtype=object), labels=labels)
        elif kind == "wrong_key":
            np.savez(path, pixels=imgs, labels=labels)
        elif kind == "wrong_dtype":
            np.savez(path, images=imgs.astype(np.float32), labels=labels)
        elif kind == "wrong_shape":
            np.savez(path, images=np.zeros((4, 3, 32, 32), np.uint8), labels=labels)
        else:
            np.savez(path, images=imgs, labels=np.arange(5))

    path = _write_first20(tmp_path, write)
    monkeypatch.setenv("FLEXROUND_MCU_DATA", str(tmp_path))
    msg = user_error(load_dataset, "cifar10-test-first20")
    assert str(path) in msg
    if kind.startswith("wrong") or kind == "label_count":
        assert "'images' uint8 (N,32,32,3)" in msg


def test_good_npz_in_tmp_root(monkeypatch, tmp_path):
    # labels of any integer dtype are accepted and come out int64
    _write_first20(tmp_path, lambda p: np.savez(p, images=np.ones((4, 32, 32, 3), np.uint8),
                                                labels=np.arange(4, dtype=np.int32)))
    monkeypatch.setenv("FLEXROUND_MCU_DATA", str(tmp_path))
    ds = load_dataset("cifar10-test-first20")
    assert len(ds) == 4 and ds.y.dtype == np.int64


# --- official CIFAR-10 python batches ---------------------------------------------------------------------------

def _fake_batch(n: int, seed: int):
    rng = np.random.default_rng(seed)
    data = rng.integers(0, 256, (n, 3072), dtype=np.uint8)
    labels = [int(v) for v in rng.integers(0, 10, n)]
    return {b"batch_label": b"testing batch 1 of 1", b"labels": labels, b"data": data,
            b"filenames": [f"img_{i}.png".encode() for i in range(n)]}


def _write_pickle(path: Path, obj, protocol: int) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "wb") as f:
        pickle.dump(obj, f, protocol=protocol)
    return path


@pytest.mark.parametrize("protocol", [2, pickle.HIGHEST_PROTOCOL])
def test_cifar_batches_round_trip(tmp_path, protocol):
    folder = tmp_path / "cifar-10-batches-py"
    test = _fake_batch(5, seed=0)
    _write_pickle(folder / "test_batch", test, protocol)
    for k in range(1, 6):
        _write_pickle(folder / f"data_batch_{k}", _fake_batch(3, seed=k), protocol)

    ds = load_cifar10_batches(folder, "test")
    assert ds.name == "cifar10-test" and ds.x.shape == (5, 32, 32, 3) and ds.x.dtype == np.uint8
    assert ds.y.dtype == np.int64 and ds.y.tolist() == test[b"labels"]
    row0 = test[b"data"][0]
    assert tuple(ds.x[0, 0, 0]) == (row0[0], row0[1024], row0[2048])  # (R, G, B) of the first pixel
    n, h, w, c = 3, 7, 21, 2  # any pixel: row n, plane c, then row-major h, w
    assert ds.x[n, h, w, c] == test[b"data"][n, c * 1024 + h * 32 + w]

    train = load_cifar10_batches(folder, split="train")
    assert train.name == "cifar10-train" and len(train) == 15 and (train.real_scale, train.real_offset) == (1.0, 0.0)
    assert "split" in user_error(load_cifar10_batches, folder, split="val")


class _Evil:
    def __init__(self, cmd):
        self.cmd = cmd

    def __reduce__(self):
        return (os.system, (self.cmd,))


@pytest.mark.parametrize("protocol", [0, 2, pickle.HIGHEST_PROTOCOL])
def test_malicious_pickle_is_refused_without_running(tmp_path, protocol):
    marker = tmp_path / "pwned"
    batch = _fake_batch(2, seed=0)
    batch[b"batch_label"] = _Evil(f"touch {marker}")  # nested inside an otherwise valid batch
    folder = tmp_path / "cifar-10-batches-py"
    path = _write_pickle(folder / "test_batch", batch, protocol)
    msg = user_error(load_cifar10_batches, folder)
    assert str(path) in msg and "system" in msg
    assert not marker.exists()


def test_other_bad_batches(tmp_path):
    folder = tmp_path / "cifar-10-batches-py"
    folder.mkdir()
    assert str(folder / "test_batch") in user_error(load_cifar10_batches, folder)  # missing file
    assert "does not exist" in user_error(load_cifar10_batches, tmp_path / "nope")
    (folder / "test_batch").write_bytes(b"\x80\x02garbage")
    assert str(folder / "test_batch") in user_error(load_cifar10_batches, folder)
    # _codecs.encode is admitted only for latin1 (how Python 3 pickles bytes); any other codec is refused
    (folder / "test_batch").write_bytes(b"c_codecs\nencode\n(Vabc\nVrot13\ntR.")
    assert str(folder / "test_batch") in user_error(load_cifar10_batches, folder)
    _write_pickle(folder / "test_batch", [1, 2, 3], 2)  # a valid pickle, but not a batch dict
    assert "b'data'" in user_error(load_cifar10_batches, folder)
    bad = _fake_batch(2, seed=0)
    bad[b"labels"] = [0, 10]
    _write_pickle(folder / "test_batch", bad, 2)
    assert "0..9" in user_error(load_cifar10_batches, folder)


def test_cifar10_test_full(monkeypatch, tmp_path):
    monkeypatch.setenv("FLEXROUND_MCU_DATA", str(tmp_path))
    msg = user_error(load_dataset, "cifar10-test-full")
    assert str(tmp_path / "cifar-10-batches-py" / "test_batch") in msg and "FLEXROUND_MCU_DATA" in msg
    _write_pickle(tmp_path / "cifar-10-batches-py" / "test_batch", _fake_batch(4, seed=1), 2)
    ds = load_dataset("cifar10-test-full", limit=3)
    assert ds.name == "cifar10-test-full" and len(ds) == 3
