"""Read the official CIFAR-10 python layout (cifar-10-batches-py/) without trusting its pickles.

The batch files are pickles, and a plain pickle.load runs whatever callable the file names. The unpickler
below resolves only the few globals a batch of numpy arrays needs, so a hostile file fails before any of
its code can run.
"""

from __future__ import annotations

import codecs
import os
import pickle
from pathlib import Path

import numpy as np

from flexround_mcu.data.datasets import Dataset
from flexround_mcu.errors import UserError

try:  # numpy >= 2 (and 1.26, which ships numpy._core for reading numpy 2 pickles)
    from numpy._core.multiarray import _reconstruct
    from numpy._core.numeric import _frombuffer
except ImportError:  # pragma: no cover - older numpy 1.x
    from numpy.core.multiarray import _reconstruct
    from numpy.core.numeric import _frombuffer


def _latin1_encode(text, encoding):
    # Python 3 writes bytes at pickle protocols 0-2 as _codecs.encode(str, "latin1"). Only that use is allowed:
    # other codecs (zlib, bz2, ...) have no business in a batch file.
    if encoding != "latin1":
        raise pickle.UnpicklingError(f"_codecs.encode with encoding {encoding!r}")
    return codecs.encode(text, "latin1")


# (module, name) -> object. Both numpy module spellings: numpy 1.x writes numpy.core, numpy 2 numpy._core.
# _frombuffer is what numpy writes at pickle protocol 5 (the highest); the original files use _reconstruct.
_ALLOWED = {
    ("numpy.core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy._core.multiarray", "_reconstruct"): _reconstruct,
    ("numpy.core.numeric", "_frombuffer"): _frombuffer,
    ("numpy._core.numeric", "_frombuffer"): _frombuffer,
    ("numpy", "ndarray"): np.ndarray,
    ("numpy", "dtype"): np.dtype,
    ("_codecs", "encode"): _latin1_encode,
}


class _RestrictedUnpickler(pickle.Unpickler):
    def __init__(self, file, path: Path):
        super().__init__(file, encoding="bytes")  # the originals are Python 2 pickles with byte-string keys
        self._path = path

    def find_class(self, module, name):
        try:
            return _ALLOWED[(module, name)]
        except KeyError:
            raise UserError(
                f"{self._path}: refusing to unpickle global {module}.{name} (a CIFAR-10 batch holds only numpy "
                f"arrays, lists and strings): use the official cifar-10-python.tar.gz files"
            ) from None

    def persistent_load(self, pid):
        raise UserError(f"{self._path}: unexpected persistent id in pickle: use the official CIFAR-10 files")


def _read_batch(path: Path) -> tuple[np.ndarray, np.ndarray]:
    """One batch file -> (uint8 NHWC images, int64 labels)."""
    if not path.is_file():
        raise UserError(f"CIFAR-10 batch file {path} is missing: point at an extracted cifar-10-batches-py/ folder")
    try:
        with open(path, "rb") as f:
            d = _RestrictedUnpickler(f, path).load()
    except UserError:
        raise
    except Exception as e:  # a corrupt pickle can fail with almost any exception type; all mean "bad file"
        raise UserError(f"{path}: not a readable CIFAR-10 batch pickle ({type(e).__name__}: {e}): "
                        f"re-extract cifar-10-python.tar.gz") from None
    data = d.get(b"data") if isinstance(d, dict) else None
    labels = d.get(b"labels") if isinstance(d, dict) else None
    if not (isinstance(data, np.ndarray) and data.dtype == np.uint8 and data.ndim == 2 and data.shape[1] == 3072
            and isinstance(labels, (list, np.ndarray)) and len(labels) == len(data)):
        raise UserError(f"{path}: expected a dict with b'data' uint8 (N, 3072) and b'labels' (N ints): "
                        f"re-extract cifar-10-python.tar.gz")
    # Rows are channel-major (1024 R, then G, then B, each row-major 32x32): -> N,C,H,W -> N,H,W,C.
    x = np.ascontiguousarray(data.reshape(-1, 3, 32, 32).transpose(0, 2, 3, 1))
    try:
        y = np.asarray(labels, dtype=np.int64)
    except (TypeError, ValueError, OverflowError):
        y = None
    if y is None or y.ndim != 1 or (y.size and (y.min() < 0 or y.max() > 9)):
        raise UserError(f"{path}: labels must be 10 classes 0..9: re-extract cifar-10-python.tar.gz")
    return x, y


def load_cifar10_batches(folder: str | os.PathLike, split: str = "test") -> Dataset:
    """The official test_batch (split='test') or data_batch_1..5 (split='train') of a cifar-10-batches-py folder."""
    files = {"test": ["test_batch"], "train": [f"data_batch_{k}" for k in range(1, 6)]}
    if split not in files:
        raise UserError(f"unknown CIFAR-10 split {split!r}: use 'test' or 'train'")
    folder = Path(folder)
    if not folder.is_dir():
        raise UserError(f"CIFAR-10 folder {folder} does not exist: point at an extracted cifar-10-batches-py/ folder")
    parts = [_read_batch(folder / name) for name in files[split]]
    return Dataset(name=f"cifar10-{split}", x=np.concatenate([p[0] for p in parts]),
                   y=np.concatenate([p[1] for p in parts]), real_scale=1.0, real_offset=0.0)
