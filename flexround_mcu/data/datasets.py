"""Evaluation and calibration sets read from the data folder (layout and provenance: shared/data/LOADING.md)."""

from __future__ import annotations

from dataclasses import dataclass, replace

import numpy as np

from flexround_mcu.data.paths import ENV_VAR, data_root, require_file
from flexround_mcu.errors import UserError

# The int8 DS-CNN's input quantization. The .tflite stores the scale as float32, so use exactly that value:
# then quantize_input(KWS_INPUT_SCALE, KWS_INPUT_ZERO_POINT) gives back the stored features bit for bit.
KWS_INPUT_SCALE = float(np.float32(0.5847029))
KWS_INPUT_ZERO_POINT = 83

_RECOPY = "re-copy it from shared/data"


def _one_line(e: Exception) -> str:
    return f"{type(e).__name__}: {' '.join(str(e).split())}"


def _check_limit(n) -> int:
    if isinstance(n, bool) or not isinstance(n, (int, np.integer)) or n <= 0:
        raise UserError(f"limit must be a positive integer, got {n!r}: pass a count of 1 or more")
    return int(n)


@dataclass(frozen=True, eq=False)  # eq=False: a generated == over ndarray fields would raise, not compare
class Dataset:
    """Inputs as stored plus labels; the float model's input is real = (x - real_offset) * real_scale."""

    name: str
    x: np.ndarray  # uint8 NHWC pixels (CIFAR sets) or int8 (N,49,10,1) features (KWS)
    y: np.ndarray  # int64 labels
    real_scale: float
    real_offset: float

    def __post_init__(self):
        if len(self.x) != len(self.y):
            raise ValueError(f"dataset {self.name}: {len(self.x)} inputs but {len(self.y)} labels")

    def __len__(self) -> int:
        return len(self.y)

    def _real64(self) -> np.ndarray:
        return (self.x.astype(np.float64) - self.real_offset) * self.real_scale

    def to_float(self) -> np.ndarray:
        """The float model's input, float32."""
        return self._real64().astype(np.float32)

    def quantize_input(self, scale: float, zero_point: int) -> np.ndarray:
        """int8 input for a model with these input params: clip(round_half_away(real / scale) + zp, -128, 127).

        Computed in float64 with TFLite's rounding (half away from zero), so a model's own input params give back
        exactly the stored values (KWS features; CIFAR pixel - 128 for scale 1, zero point -128).
        """
        if not (np.isfinite(scale) and scale > 0):
            raise UserError(f"input scale must be a positive finite number, got {scale!r}: check the model's input")
        v = self._real64() / float(scale)
        q = np.sign(v) * np.floor(np.abs(v) + 0.5) + int(zero_point)
        return np.clip(q, -128, 127).astype(np.int8)

    def limit(self, n: int) -> Dataset:
        """The first n items (all of them if n >= len)."""
        n = _check_limit(n)
        return replace(self, x=self.x[:n], y=self.y[:n])


def model_units(ds, scale: float, zero_point: int):
    """The dataset relabelled so that its to_float() is the model's input and quantize_input(scale, zero_point) the
    int8 input: real = (q - zero_point) * scale, with q the data as int8 (uint8 values - 128, int8 values as
    stored), so the int8 input is the data itself, bit for bit. Float data are the model's input already.

    For the zoo's own datasets this is what the dataset's own convention gives (CIFAR pixels for ResNet-8,
    dequantized MFCC features for DS-CNN)."""
    if ds.x.dtype == np.uint8:
        return replace(ds, real_scale=float(scale), real_offset=float(zero_point + 128))
    if ds.x.dtype == np.int8:
        return replace(ds, real_scale=float(scale), real_offset=float(zero_point))
    return ds


def check_fits(ds: Dataset, option: str, model: str, input_hwc: tuple[int, ...], classes: int | None = None) -> None:
    """The data fit the model: inputs of shape input_hwc (H,W,C), and labels within its classes (when known); a
    UserError naming the option, the data and the model otherwise."""
    if tuple(ds.x.shape[1:]) != tuple(input_hwc):
        raise UserError(f"{option} {ds.name}: inputs of shape {tuple(ds.x.shape[1:])} (H,W,C), but {model} takes "
                        f"{tuple(input_hwc)}; pass data of the model's input size")
    if classes is not None and len(ds.y) and int(ds.y.max()) >= classes:
        raise UserError(f"{option} {ds.name}: label {int(ds.y.max())}, but {model} has {classes} outputs; pass "
                        f"the data the model was trained for")


def _read_npz(relpath: str, key: str, dtype, tail: tuple[int, ...]) -> tuple[np.ndarray, np.ndarray]:
    """(inputs, int64 labels) from one .npz under the data root, checked against the expected key/dtype/shape."""
    path = require_file(relpath)
    try:
        # Open the file ourselves: np.load(path) leaks its handle when the zip turns out corrupt.
        with open(path, "rb") as f:
            z = np.load(f, allow_pickle=False)  # never unpickle: a .npz of plain arrays needs no pickle
            # A bare .npy array under an .npz name gives an ndarray: treat it as a file with no named arrays.
            arrays = {k: z[k] for k in z.files} if isinstance(z, np.lib.npyio.NpzFile) else {}
    except Exception as e:  # a corrupt zip fails as BadZipFile, zlib.error, EOFError, ValueError...: all "bad file"
        raise UserError(f"{path}: not a readable .npz ({_one_line(e)}): {_RECOPY}") from None
    x, y = arrays.get(key), arrays.get("labels")
    if not (x is not None and y is not None and x.dtype == dtype and x.shape[1:] == tail
            and y.ndim == 1 and np.issubdtype(y.dtype, np.integer) and len(y) == len(x)):
        got = ", ".join(f"'{k}' {v.dtype} {v.shape}" for k, v in arrays.items()) or "no arrays"
        want = f"'{key}' {np.dtype(dtype).name} (N,{','.join(map(str, tail))}) and 'labels' integer (N,)"
        raise UserError(f"{path}: expected {want}, got {got}: {_RECOPY}")
    return x, y.astype(np.int64)


_CIFAR = ("images", np.uint8, (32, 32, 3), 1.0, 0.0)  # raw 0..255 pixels: what ResNet-8 takes
_KWS = ("features", np.int8, (49, 10), KWS_INPUT_SCALE, float(KWS_INPUT_ZERO_POINT))

# name -> (files in order, then key, dtype, per-item shape, real_scale, real_offset)
_SOURCES = {
    "cifar10-test-5000": ([f"cifar10/cifar10_test_part{k}.npz" for k in range(5)], *_CIFAR),  # JPEG-decoded, lossy
    "ic01": (["mlperf_tiny/ic/ic01_perf_samples_v0.5.npz"], *_CIFAR),  # lossless, MLPerf Tiny-comparable
    "kws01": (["mlperf_tiny/kws/kws01_perf_samples.npz"], *_KWS),
    "cifar10-calib": ([f"cifar10/cifar10_train_first4000_lossless_part{k}.npz" for k in range(4)], *_CIFAR),
    "cifar10-test-first20": (["cifar10/cifar10_test_first20_lossless.npz"], *_CIFAR),
}
# The official batches, if the user has extracted cifar-10-python.tar.gz into the data root: name -> split.
# cifar10-train-full (50,000 training images) is for calibration only.
OFFICIAL_CIFAR10 = {"cifar10-test-full": "test", "cifar10-train-full": "train"}
DATASETS: tuple[str, ...] = (*_SOURCES, *OFFICIAL_CIFAR10)


def data_files(name: str) -> list[str]:
    """The files (relative to the data root) that the named set reads, in order; [] for a name not in DATASETS."""
    if name in OFFICIAL_CIFAR10:
        split = OFFICIAL_CIFAR10[name]
        return [f"cifar-10-batches-py/{f}" for f in
                (["test_batch"] if split == "test" else [f"data_batch_{k}" for k in range(1, 6)])]
    return list(_SOURCES[name][0]) if name in _SOURCES else []


def load_dataset(name: str, limit: int | None = None) -> Dataset:
    """A named set from data_root() (see DATASETS), optionally only its first `limit` items.

    cifar10-calib and cifar10-train-full are training data, for calibration only: never report accuracy on them.
    """
    if name not in DATASETS:
        raise UserError(f"unknown dataset {name!r}: choose one of {', '.join(DATASETS)}")
    if limit is not None:
        _check_limit(limit)
    if name in OFFICIAL_CIFAR10:
        from flexround_mcu.data.cifar_batches import load_cifar10_batches  # here: that module imports this one

        path = require_file(data_files(name)[0], hint=(
            f"extract the official cifar-10-python.tar.gz into {data_root()} "
            f"or set {ENV_VAR} to a folder that holds cifar-10-batches-py/"))
        ds = replace(load_cifar10_batches(path.parent, OFFICIAL_CIFAR10[name]), name=name)
    else:
        files, key, dtype, tail, scale, offset = _SOURCES[name]
        parts = [_read_npz(f, key, dtype, tail) for f in files]
        x = np.concatenate([p[0] for p in parts])
        if key == "features":
            x = x.reshape(-1, *tail, 1)  # NHWC with one channel, the DS-CNN's input layout
        ds = Dataset(name, x, np.concatenate([p[1] for p in parts]), scale, offset)
    return ds if limit is None else ds.limit(limit)
