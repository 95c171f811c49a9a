"""The official CIFAR-10 batches for users without the project's data folder: found, or downloaded and extracted.

`official_cifar10()` gives a folder laid out as cifar-10-batches-py/, looking in this order:
  1. the data folder's own cifar-10-batches-py/ (the user extracted the archive there);
  2. the cache's extracted copy, <cache>/datasets/cifar-10-batches-py/ (cache: flexround_mcu.download.cache_root);
  3. a download of cifar-10-python.tar.gz (URL: $FLEXROUND_MCU_CIFAR10_URL, else the pinned one) into
     <cache>/datasets/ through flexround_mcu.download (pinned size and sha256; a file the user saved there
     themselves is used if it verifies), then extracted.

Extraction trusts nothing in the archive but the bytes of the expected members: only the seven batch files
(data_batch_1..5, test_batch, batches.meta) under cifar-10-batches-py/ are taken, each must be a regular file, and
each is written under a name chosen here, so a member's own path never becomes a path on disk. Links, absolute or
'..' paths, duplicates and any other member make the whole archive refused. The files go into a temporary folder
beside the target, which is renamed into place only when complete, with a marker file recording the archive's
sha256 and the files' sizes; the archive itself is deleted afterwards (the batches are what is read).
The batch files are then read by cifar_batches.load_cifar10_batches, which unpickles only numpy arrays.
"""

from __future__ import annotations

import json
import os
import shutil
import sys
import tarfile
import tempfile
from dataclasses import dataclass
from pathlib import Path, PurePosixPath

from flexround_mcu.data.paths import ENV_VAR as DATA_ENV_VAR
from flexround_mcu.data.paths import data_root
from flexround_mcu.download import CACHE_ENV_VAR, PinnedFile, cache_root, download, one_line, sha256_of
from flexround_mcu.errors import UserError

URL_ENV_VAR = "FLEXROUND_MCU_CIFAR10_URL"


ArchiveSpec = PinnedFile  # the archive's name in the cache, its pinned URL, sha256 and size

CIFAR10_ARCHIVE = ArchiveSpec(
    filename="cifar-10-python.tar.gz",
    url="https://www.cs.toronto.edu/~kriz/cifar-10-python.tar.gz",
    sha256="6d958be074577803d12ecdefd02955f39262c83c16fe9348329d7fe0b5c001ce",
    size=170_498_071,
)

FOLDER = "cifar-10-batches-py"
BATCHES = (*(f"data_batch_{k}" for k in range(1, 6)), "test_batch")  # what the two splits read
MEMBERS = (*BATCHES, "batches.meta")  # what extraction takes
_IGNORED = ("readme.html",)  # in the official archive beside the batches; not needed, not extracted
MARKER = ".flexround-mcu-archive.json"  # in an extracted folder: the archive it came from and its files' sizes


@dataclass(frozen=True)
class OfficialBatches:
    """A cifar-10-batches-py folder, and where it came from as report.json records it."""

    folder: Path
    source: dict


def datasets_cache() -> Path:
    """<cache>/datasets: the downloaded archive while it is extracted, then its cifar-10-batches-py/."""
    return cache_root() / "datasets"


def _say(msg: str) -> None:
    print(msg, file=sys.stderr, flush=True)


def _how_to_get(cache: Path) -> str:
    return (f"set {DATA_ENV_VAR} to a data folder holding cifar10/ (like shared/data), pass --dataset and "
            f"--calib-dataset, or save the official {CIFAR10_ARCHIVE.filename} as {cache / CIFAR10_ARCHIVE.filename}")


def official_cifar10(progress: bool | None = None) -> OfficialBatches:
    """The official batches (order in the module docstring), downloading and extracting them if need be.

    Prints one line on stderr saying which copy is used. `progress`: tqdm bars (None: only on a terminal).
    """
    root = data_root()
    own = root / FOLDER
    if all((own / name).is_file() for name in BATCHES):
        _say(f"CIFAR-10 .npz sets not in the data folder {root}: using its official batches in {own}")
        return OfficialBatches(own.resolve(), {"from": "data folder", "path": str(own.resolve())})

    spec = CIFAR10_ARCHIVE  # looked up at call time, so that tests can stand in an archive of their own
    cache = datasets_cache()
    folder = cache / FOLDER
    fetched = False
    if not _complete(folder, spec):
        _remove_stale(folder)
        archive = cache / spec.filename
        if archive.is_file() and archive.stat().st_size == spec.size and sha256_of(archive) == spec.sha256:
            url = None  # saved there by hand: where from is not known
            _say(f"CIFAR-10 not in the data folder {root}: extracting the official archive {archive} "
                 f"(sha256 verified) into {folder}")
        else:
            url = os.environ.get(URL_ENV_VAR) or spec.url
            _say(f"CIFAR-10 not in the data folder {root}: downloading the official {spec.filename} "
                 f"({spec.size / 1e6:.0f} MB) from {url} into {cache} (size and sha256 checked)")
            download(url, archive, spec.sha256, spec.size, how_to_get=_how_to_get(cache), progress=progress)
            fetched = True
        try:
            _extract(archive, folder, spec, url, progress)
        finally:
            archive.unlink(missing_ok=True)  # extracted, or refused: either way it is not needed any more
    else:
        _say(f"CIFAR-10 not in the data folder {root}: using the official batches in {folder} "
             f"(from {spec.filename}, sha256 verified when downloaded)")
    marker = json.loads((folder / MARKER).read_text())
    return OfficialBatches(folder.resolve(), {
        "from": "downloaded archive", "archive": spec.filename, "url": marker.get("url"), "sha256": spec.sha256,
        "path": str(folder.resolve()), "downloaded_now": fetched})


def _complete(folder: Path, spec: ArchiveSpec) -> bool:
    """Whether folder is an extraction of this very archive, all its files there at their recorded sizes."""
    try:
        marker = json.loads((folder / MARKER).read_text())
        sizes = marker["sizes"]
        return marker["sha256"] == spec.sha256 and all(
            (folder / name).is_file() and (folder / name).stat().st_size == sizes[name] for name in MEMBERS)
    except (OSError, ValueError, KeyError, TypeError):
        return False


def _remove_stale(folder: Path) -> None:
    """Delete an extraction of ours that is damaged or from another archive; refuse to touch anything else."""
    if not os.path.lexists(folder):
        return
    if folder.is_symlink() or not folder.is_dir() or not (folder / MARKER).is_file():
        raise UserError(f"{folder} exists but is not a CIFAR-10 folder flexround-mcu extracted (no {MARKER} in it): "
                        f"move it away, or set {CACHE_ENV_VAR} to another cache folder")
    shutil.rmtree(folder)


def _refuse(archive: Path, name: str, why: str) -> UserError:
    return UserError(f"{archive}: refusing member {name!r} ({why}); nothing was extracted and the archive was "
                     f"deleted: it is not the official CIFAR-10 layout ({FOLDER}/ with {', '.join(MEMBERS)})")


def _extract_members(archive: Path, into: Path, progress: bool | None) -> dict[str, int]:
    """The expected members' bytes written into `into` under their base names; returns name -> size."""
    from tqdm import tqdm

    wanted = {f"{FOLDER}/{name}": name for name in MEMBERS}
    ignored = {f"{FOLDER}/{name}" for name in _IGNORED}
    sizes: dict[str, int] = {}
    try:
        with tarfile.open(archive, "r:gz") as tar, tqdm(
                total=len(MEMBERS), unit="file", desc=f"extracting {FOLDER}", leave=False, file=sys.stderr,
                disable=None if progress is None else not progress) as bar:
            for member in tar:
                name = member.name
                if member.issym() or member.islnk():
                    raise _refuse(archive, name, f"a link to {member.linkname!r}")
                parts = PurePosixPath(name).parts
                if name.startswith("/") or "\\" in name or ".." in parts or (parts and parts[0] != FOLDER):
                    raise _refuse(archive, name, f"a path outside {FOLDER}/")
                if (name == FOLDER and member.isdir()) or (name in ignored and member.isfile()):
                    continue
                if name not in wanted or not member.isfile():
                    raise _refuse(archive, name, "not one of the expected regular files")
                base = wanted[name]
                if base in sizes:
                    raise _refuse(archive, name, "present twice")
                src = tar.extractfile(member)
                with src, open(into / base, "xb") as dst:
                    shutil.copyfileobj(src, dst, 1 << 20)
                    sizes[base] = dst.tell()
                if sizes[base] != member.size:
                    raise _refuse(archive, name, f"{sizes[base]} bytes read of {member.size}")
                bar.update(1)
    except UserError:
        raise
    except Exception as e:  # a corrupt archive fails as tarfile.ReadError, EOFError, zlib.error...; a full disk too
        raise UserError(f"{archive}: extraction failed ({one_line(e)}); nothing was extracted and the archive was "
                        f"deleted: {_how_to_get(archive.parent)}") from None
    missing = [name for name in MEMBERS if name not in sizes]
    if missing:
        raise UserError(f"{archive}: no {', '.join(f'{FOLDER}/{m}' for m in missing)} in it; nothing was extracted "
                        f"and the archive was deleted: it is not the official CIFAR-10 archive")
    return sizes


def _extract(archive: Path, folder: Path, spec: ArchiveSpec, url: str | None, progress: bool | None) -> None:
    """The archive's batches as `folder`, written beside it under a temporary name and renamed when complete."""
    tmp = Path(tempfile.mkdtemp(prefix=f".{folder.name}.", suffix=".partial", dir=folder.parent))
    try:
        sizes = _extract_members(archive, tmp, progress)
        (tmp / MARKER).write_text(json.dumps({"archive": spec.filename, "url": url, "sha256": spec.sha256,
                                              "size": spec.size, "sizes": sizes}, indent=2) + "\n")
        try:
            os.rename(tmp, folder)
        except OSError as e:
            if not _complete(folder, spec):  # not just another run that finished first
                raise UserError(f"cannot move the extracted CIFAR-10 batches into {folder} ({one_line(e)}): "
                                f"set {CACHE_ENV_VAR} to a writable folder") from None
    finally:
        shutil.rmtree(tmp, ignore_errors=True)  # gone already when the rename succeeded
