"""A user's own data: a folder of .npy / .npz files (or one .npz file) with inputs `x` and labels `y`.

Format (one of):
  DIR/x.npy and DIR/y.npy          inputs and labels as two arrays;
  DIR/*.npz (one or more)          each holding arrays `x` and `y`, concatenated in file-name order;
  FILE.npz                         one such file given directly.
  x: (N, H, W, C) or (N, H, W) (one channel), NHWC like TFLite, in raw units:
     uint8 (e.g. image pixels 0..255), int8 (e.g. features already in int8 form), or float16/32/64;
  y: (N,) integer class labels 0..K-1.
Arrays are read with allow_pickle=False. The export declares how raw values become the model's input
(--input-scale / --input-zero-point, see datasets.model_units); a Dataset here keeps the raw values (real = x).

load_data(spec) takes either a known dataset name (flexround_mcu.data.DATASETS) or such a folder / file.
"""
from __future__ import annotations

import os
from pathlib import Path

import numpy as np

from flexround_mcu.data.datasets import DATASETS, Dataset, _check_limit, _one_line, load_dataset
from flexround_mcu.errors import UserError

FORMAT = "a folder with x.npy + y.npy, or .npz files holding arrays 'x' (N,H,W,C) and 'y' (N,)"
INPUT_DTYPES = (np.uint8, np.int8, np.float16, np.float32, np.float64)


def _read(path: Path, npz: bool) -> dict[str, np.ndarray]:
    try:
        with open(path, "rb") as f:
            z = np.load(f, allow_pickle=False)
            if isinstance(z, np.lib.npyio.NpzFile):
                return {k: z[k] for k in z.files}
            return {"": z} if not npz else {}
    except Exception as e:  # corrupt zip, truncated header, an object array needing pickle ...
        raise UserError(f"{path}: not a readable {'.npz' if npz else '.npy'} file ({_one_line(e)}): "
                        f"write it with numpy.save{'z' if npz else ''}") from None


def _describe(arrays: dict[str, np.ndarray]) -> str:
    return ", ".join(f"'{k}' {v.dtype} {v.shape}" for k, v in arrays.items()) or "no arrays"


def _check(where: str, x: np.ndarray, y: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    if x.ndim == 3:
        x = x[..., None]  # (N, H, W): one channel
    if x.ndim != 4 or 0 in x.shape:
        raise UserError(f"{where}: x has shape {x.shape}; expected (N, H, W, C) or (N, H, W) with N > 0")
    if x.dtype not in INPUT_DTYPES:
        raise UserError(f"{where}: x is {x.dtype}; store it as uint8 or int8 raw values, or as float32")
    if x.dtype.kind == "f" and not np.all(np.isfinite(x)):
        raise UserError(f"{where}: x holds NaN or infinite values; clean the data")
    if y.ndim != 1 or not np.issubdtype(y.dtype, np.integer):
        raise UserError(f"{where}: y is {y.dtype} {y.shape}; expected integer class labels of shape (N,)")
    if len(y) != len(x):
        raise UserError(f"{where}: x holds {len(x)} inputs but y {len(y)} labels; give one label per input")
    if y.min() < 0:
        raise UserError(f"{where}: y holds the negative label {int(y.min())}; labels are class indices 0..K-1")
    return x, y.astype(np.int64)


def load_folder(path: str | os.PathLike, limit: int | None = None, name: str | None = None) -> Dataset:
    """Inputs and labels from a folder (or one .npz file) in the format above, raw values as stored."""
    if limit is not None:
        _check_limit(limit)
    path = Path(path)
    where = name or str(path)
    if path.is_file():
        if path.suffix.lower() != ".npz":
            raise UserError(f"{path}: a data file must be a .npz with arrays 'x' and 'y'; or pass {FORMAT}")
        npz = [path]
        npy = []
    elif path.is_dir():
        npz = sorted(p for p in path.iterdir() if p.suffix.lower() == ".npz" and p.is_file())
        npy = [path / "x.npy", path / "y.npy"]
        has_npy = [p.is_file() for p in npy]
        if any(has_npy) and npz:
            raise UserError(f"{path}: holds both x.npy/y.npy and .npz files; keep one form ({FORMAT})")
        if any(has_npy) and not all(has_npy):
            missing = npy[has_npy.index(False)].name
            raise UserError(f"{path}: {missing} is missing; put x.npy and y.npy side by side")
        if not any(has_npy) and not npz:
            raise UserError(f"{path}: no x.npy/y.npy and no .npz files in it; expected {FORMAT}")
        npy = npy if all(has_npy) else []
    else:
        raise UserError(f"{path}: no such dataset folder or file; pass a known dataset "
                        f"({', '.join(DATASETS)}) or {FORMAT}")
    if npy:
        x, y = (_read(p, npz=False).get("") for p in npy)
        if x is None or y is None:
            raise UserError(f"{path}: x.npy and y.npy must each hold one array (numpy.save)")
        xs, ys = [x], [y]
    else:
        xs, ys = [], []
        for p in npz:
            arrays = _read(p, npz=True)
            if "x" not in arrays or "y" not in arrays:
                missing = " and ".join(f"'{k}'" for k in ("x", "y") if k not in arrays)
                raise UserError(f"{p}: no array {missing} (it holds {_describe(arrays)}); save inputs as 'x' and "
                                f"labels as 'y', e.g. numpy.savez(path, x=inputs, y=labels)")
            xs.append(arrays["x"])
            ys.append(arrays["y"])
        shapes = {(a.shape[1:], a.dtype) for a in xs}
        if len(shapes) > 1:
            raise UserError(f"{path}: the .npz files hold inputs of different shapes or types "
                            f"({', '.join(f'{d} {s}' for s, d in sorted(shapes, key=str))}); make them agree")
        x, y = (np.concatenate(xs), np.concatenate(ys)) if len(xs) > 1 else (xs[0], ys[0])
    x, y = _check(where, x, y)
    if limit is not None:
        x, y = x[:limit], y[:limit]
    return Dataset(where, np.ascontiguousarray(x), y, 1.0, 0.0)


def load_data(spec: str | os.PathLike, limit: int | None = None) -> Dataset:
    """A known dataset by name (see DATASETS), else a folder / .npz file in the format above."""
    if str(spec) in DATASETS:
        return load_dataset(str(spec), limit=limit)
    if not os.path.exists(spec):
        raise UserError(f"unknown dataset {str(spec)!r}: choose one of {', '.join(DATASETS)}, or pass {FORMAT}")
    return load_folder(spec, limit=limit, name=str(spec))
