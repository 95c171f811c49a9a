"""The evaluation and calibration sets of an export, and where they came from.

A set the user names (--dataset / --calib-dataset: a known name or a folder) is read as given. A zoo model's
default set that the data folder does not hold is replaced, when there is a public source for it:
  cifar10-test-5000 (evaluation)  -> cifar10-test-full: the 10,000 official test images;
  cifar10-calib     (calibration) -> cifar10-train-full[:4000]: official training images 0..3999, the start of
                                     data_batch_1, which are the images cifar10-calib holds (shared/data's
                                     MANIFEST.md), so the seeded calibration draw picks the same images;
both from the official archive (data/cifar_download.py). kws01 (ds_cnn) has no public source: without it the
export stops with one line saying what to pass.
"""

from __future__ import annotations

from dataclasses import dataclass, replace
from pathlib import Path

from flexround_mcu.data.cifar_batches import load_cifar10_batches
from flexround_mcu.data.cifar_download import official_cifar10
from flexround_mcu.data.datasets import DATASETS, OFFICIAL_CIFAR10, Dataset, data_files
from flexround_mcu.data.folder import FORMAT, load_data
from flexround_mcu.data.paths import ENV_VAR, data_root
from flexround_mcu.errors import UserError

CALIB_IMAGES = 4000  # the size of cifar10-calib
# default set -> (the official set standing in for it, how many of its first images; None: all)
STAND_INS = {"cifar10-test-5000": ("cifar10-test-full", None), "cifar10-calib": ("cifar10-train-full", CALIB_IMAGES)}


@dataclass(frozen=True)
class ExportData:
    eval: Dataset
    calib: Dataset
    eval_source: dict  # report.json's data_source.evaluation
    calib_source: dict  # report.json's data_source.calibration


def _absent(name: str) -> bool:
    """A known set none of whose files is in the data folder (a partial copy is an error for load_dataset)."""
    files = data_files(name)
    return bool(files) and not any((data_root() / f).is_file() for f in files)


def _source(spec: str) -> dict:
    if spec in DATASETS:
        return {"from": "data folder", "path": str(data_root().resolve())}
    return {"from": "folder", "path": str(Path(spec).resolve())}


def load_export_data(eval_spec: str, calib_spec: str, eval_limit: int | None = None, *,
                     eval_is_default: bool = False, calib_is_default: bool = False,
                     progress: bool | None = None) -> ExportData:
    """The evaluation set (its first `eval_limit` items) and the whole calibration set, raw as stored.

    `*_is_default`: the set is the zoo model's default, not the user's choice, and may be replaced as the module
    docstring says when the data folder lacks it.
    """
    roles = [("--dataset", eval_spec, eval_is_default), ("--calib-dataset", calib_spec, calib_is_default)]
    absent = {option: spec for option, spec, default in roles if default and _absent(spec)}
    stuck = {option: spec for option, spec in absent.items() if spec not in STAND_INS}
    if stuck:
        root = data_root()
        names = " and ".join(dict.fromkeys(stuck.values()))
        first = root / data_files(next(iter(stuck.values())))[0]
        where = f"the data folder {root}" + ("" if root.is_dir() else ", which does not exist")
        raise UserError(f"the default data {names} is not in {where} (no {first}) and has no public download: "
                        f"pass {' and '.join(stuck)} (a known dataset name, or {FORMAT}), or set {ENV_VAR} to a "
                        f"data folder that holds it")
    loaded = {}
    for option, spec, _ in roles:  # the sets that are there first: a bad one fails before any download
        if option not in absent:
            loaded[option] = (load_data(spec, limit=eval_limit if option == "--dataset" else None), _source(spec))
    if absent:
        official = official_cifar10(progress)
        for option, spec in absent.items():
            name, first = STAND_INS[spec]
            ds = load_cifar10_batches(official.folder, OFFICIAL_CIFAR10[name])
            if first is not None:
                ds = ds.limit(first)
                name = f"{name}[:{len(ds)}]"  # the count read: fewer than `first` only in a smaller test archive
            ds = replace(ds, name=name)
            if option == "--dataset" and eval_limit is not None:
                ds = ds.limit(eval_limit)
            loaded[option] = (ds, official.source)
    (eval_set, eval_source), (calib_set, calib_source) = loaded["--dataset"], loaded["--calib-dataset"]
    return ExportData(eval_set, calib_set, eval_source, calib_source)
