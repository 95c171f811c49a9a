"""Finding a zoo model's weights file: explicit path, data folder, cache, then a checksummed download.

Resolution order (`resolve_weights`):
  1. an explicit path (`--weights PATH`), used as given (not checksummed: it may hold the user's own weights);
  2. `<data folder>/<spec.data_relpath>`, the data folder being $FLEXROUND_MCU_DATA (see flexround_mcu.data);
  3. `<cache>/<spec.filename>` if its sha256 is the pinned one; cache = $FLEXROUND_MCU_CACHE, else
     ~/.cache/flexround-mcu/weights;
  4. a download of spec.url (overridable by argument or $FLEXROUND_MCU_WEIGHTS_URL) into the cache, through
     flexround_mcu.download: written to a temporary file beside the target, checked against the pinned size and
     sha256, then renamed into place. A failed or mismatching download leaves nothing behind and raises a one-line
     UserError saying how to get the file instead.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path

from flexround_mcu.data.paths import ENV_VAR as DATA_ENV_VAR
from flexround_mcu.data.paths import data_root
from flexround_mcu.download import CACHE_ENV_VAR, PinnedFile, cache_root, sha256_of
from flexround_mcu.download import download as _download
from flexround_mcu.errors import UserError

URL_ENV_VAR = "FLEXROUND_MCU_WEIGHTS_URL"


@dataclass(frozen=True)
class WeightsSpec(PinnedFile):
    """A zoo model's weights: the pinned download, and the file's path under the data folder."""

    data_relpath: str = ""  # path under the data folder


RESNET8_WEIGHTS = WeightsSpec(
    filename="pretrainedResnet.h5",
    data_relpath="mlperf_tiny/ic/pretrainedResnet.h5",
    url=("https://github.com/mlcommons/tiny/raw/1afd2c9820f795965a6134facd0b4dfae41ef23f/"
         "benchmark/training/image_classification/trained_models/pretrainedResnet.h5"),
    sha256="5f938a8eea605438cc7360aa13c987bc6d7bd0c8d931b2917361ae7ae4eeda2f",
    size=1116712,
)

# The MLPerf Tiny KWS DS-CNN as the reference repository's "float32" .tflite. Its pointwise convs store int8 weights
# with a per-tensor scale (the converter's dynamic-range option); the float frontend dequantizes them.
DS_CNN_WEIGHTS = WeightsSpec(
    filename="kws_ref_model_float32.tflite",
    data_relpath="mlperf_tiny/kws/kws_ref_model_float32.tflite",
    url=("https://github.com/mlcommons/tiny/raw/1afd2c9820f795965a6134facd0b4dfae41ef23f/"
         "benchmark/training/keyword_spotting/trained_models/kws_ref_model_float32.tflite"),
    sha256="e5004c6f1012246e33fa068d8488325538e0444073cd361f5a7edb40c73f12d2",
    size=43392,
)


@dataclass(frozen=True)
class ResolvedWeights:
    path: Path
    source: str  # "explicit", "data", "cache" or "download"


def cache_dir() -> Path:
    """The weights cache: $FLEXROUND_MCU_CACHE if set and non-empty, else ~/.cache/flexround-mcu/weights."""
    # The weights sit at the top of $FLEXROUND_MCU_CACHE (where earlier versions put them), under weights/ of the
    # default cache root.
    return cache_root() if os.environ.get(CACHE_ENV_VAR) else cache_root() / "weights"


def _how_to_get(filename: str, data_relpath: str | None = None) -> str:
    where = f" holding {data_relpath}" if data_relpath else " (like shared/data)"
    return f"pass --weights PATH to a copy of {filename}, or set {DATA_ENV_VAR} to a data folder{where}"


def download(url: str, dest: str | os.PathLike, sha256: str, size: int | None = None,
             progress: bool | None = None, how_to_get: str | None = None) -> Path:
    """flexround_mcu.download.download for a weights file: the error messages end, by default, with how to give
    the weights instead (--weights, or a data folder)."""
    return _download(url, dest, sha256, size, progress=progress,
                     how_to_get=how_to_get or _how_to_get(Path(dest).name))


def resolve_weights(spec: WeightsSpec, weights: str | os.PathLike | None = None, *, url: str | None = None,
                    allow_download: bool = True, progress: bool | None = None) -> ResolvedWeights:
    """The weights file to use for `spec` (order in the module docstring), downloading it if need be."""
    if weights is not None:
        p = Path(weights).expanduser()
        if not p.is_file():
            raise UserError(f"--weights {weights}: no such file: pass the path of an existing {spec.filename}")
        return ResolvedWeights(p.resolve(), "explicit")
    p = data_root() / spec.data_relpath
    if p.is_file():
        return ResolvedWeights(p.resolve(), "data")
    cached = cache_dir().resolve() / spec.filename
    if cached.is_file() and sha256_of(cached) == spec.sha256:
        return ResolvedWeights(cached, "cache")
    # A cached file with another checksum (truncated, edited) is replaced by the download below.
    if not allow_download:
        raise UserError(f"weights {spec.filename} not found (looked in {p.parent} and {cache_dir()}) and downloads "
                        f"are off: {_how_to_get(spec.filename, spec.data_relpath)}")
    url = url or os.environ.get(URL_ENV_VAR) or spec.url
    download(url, cached, spec.sha256, spec.size, progress=progress,
             how_to_get=_how_to_get(spec.filename, spec.data_relpath))
    return ResolvedWeights(cached, "download")
