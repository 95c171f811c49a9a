"""Checked downloads into the cache: the one downloader behind the zoo's weights and the official CIFAR-10 archive.

A file is fetched into a temporary file beside its destination, counted and hashed as it arrives, and renamed onto
the destination only when its size and sha256 are the pinned ones; any failure deletes the temporary file and
raises a one-line UserError. The cache is $FLEXROUND_MCU_CACHE, else ~/.cache/flexround-mcu (weights.py and
data/cifar_download.py say where in it their files go).
"""

from __future__ import annotations

import hashlib
import os
import tempfile
import urllib.request
from dataclasses import dataclass
from pathlib import Path

from flexround_mcu.errors import UserError

CACHE_ENV_VAR = "FLEXROUND_MCU_CACHE"
TIMEOUT_S = 60.0  # per socket operation, not for the whole file
_CHUNK = 1 << 16


@dataclass(frozen=True)
class PinnedFile:
    """A file the project downloads: where from, and how to recognise the right one."""

    filename: str  # name in the cache folder
    url: str  # pinned download location
    sha256: str  # of the file at url
    size: int  # bytes


def cache_root() -> Path:
    """$FLEXROUND_MCU_CACHE if set and non-empty, else ~/.cache/flexround-mcu."""
    env = os.environ.get(CACHE_ENV_VAR)
    return Path(env).expanduser() if env else Path.home() / ".cache" / "flexround-mcu"


def sha256_of(path: str | os.PathLike) -> str:
    h = hashlib.sha256()
    with open(path, "rb") as f:
        for chunk in iter(lambda: f.read(_CHUNK), b""):
            h.update(chunk)
    return h.hexdigest()


def one_line(e: BaseException) -> str:
    """An exception as 'Type: message' on one line, for embedding in a UserError."""
    text = " ".join(str(e).split())
    return f"{type(e).__name__}: {text}" if text else type(e).__name__


def download(url: str, dest: str | os.PathLike, sha256: str, size: int | None, *, how_to_get: str,
             progress: bool | None = None) -> Path:
    """Download url to dest, atomically and only if its sha256 (and size, when given) match; returns dest.

    The bytes go to a temporary file in dest's folder, which is renamed onto dest once verified and deleted on any
    failure (network error, wrong checksum, fewer or more bytes than `size`, interrupt). `progress`: a tqdm bar
    (None: only on a terminal). `how_to_get` ends every error message: how the user can get the file instead.
    """
    from tqdm import tqdm

    dest = Path(dest)
    try:
        dest.parent.mkdir(parents=True, exist_ok=True)
        fd, tmp_name = tempfile.mkstemp(prefix=f".{dest.name}.", suffix=".part", dir=dest.parent)
    except OSError as e:
        raise UserError(f"cannot write to the cache folder {dest.parent} ({one_line(e)}): "
                        f"set {CACHE_ENV_VAR} to a writable folder, or {how_to_get}") from None
    tmp = Path(tmp_name)
    try:
        h, n = hashlib.sha256(), 0
        with os.fdopen(fd, "wb") as out:
            try:
                with urllib.request.urlopen(url, timeout=TIMEOUT_S) as resp, tqdm(
                        total=size, unit="B", unit_scale=True, unit_divisor=1024, desc=dest.name, leave=False,
                        disable=None if progress is None else not progress) as bar:
                    while chunk := resp.read(_CHUNK):
                        h.update(chunk)
                        n += len(chunk)
                        if size is not None and n > size:
                            break  # longer than the pinned file: it cannot match, stop reading
                        out.write(chunk)
                        bar.update(len(chunk))
            except Exception as e:  # URLError/HTTPError/timeouts are OSErrors; http.client's errors are not
                raise UserError(f"download of {url} failed ({one_line(e)}); nothing was saved: {how_to_get}") from None
        got = h.hexdigest()
        if got != sha256 or (size is not None and n != size):
            read = f"more than {size} bytes" if size is not None and n > size else f"{n} bytes"
            want = f", expected {size}" if size is not None else ""
            raise UserError(f"download of {url} failed its checksum: expected sha256 {sha256}, got {got} "
                            f"({read}{want}); nothing was saved: {how_to_get}")
        os.replace(tmp, dest)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    return dest
