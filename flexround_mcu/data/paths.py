"""Where the evaluation data lives: $FLEXROUND_MCU_DATA, else ~/.cache/flexround-mcu (laid out like shared/data)."""

from __future__ import annotations

import os
from pathlib import Path

from flexround_mcu.errors import UserError

ENV_VAR = "FLEXROUND_MCU_DATA"
_HOW_TO_SET = f"set {ENV_VAR} to a folder laid out like shared/data (e.g. {ENV_VAR}=../shared/data)"


def data_root() -> Path:
    """The data folder: $FLEXROUND_MCU_DATA if set and non-empty, else ~/.cache/flexround-mcu."""
    env = os.environ.get(ENV_VAR)
    # An empty value (FLEXROUND_MCU_DATA=) counts as unset rather than meaning the current directory.
    return Path(env).expanduser() if env else Path.home() / ".cache" / "flexround-mcu"


def require_file(relpath: str | os.PathLike, hint: str | None = None) -> Path:
    """The file `relpath` under data_root(), or a one-line UserError saying where it looked and how to fix it.

    `hint` replaces the default advice (set FLEXROUND_MCU_DATA) for files that shared/data does not hold.
    """
    root = data_root()
    source = f"from ${ENV_VAR}" if os.environ.get(ENV_VAR) else f"the default; ${ENV_VAR} is not set"
    if not root.is_dir():
        raise UserError(f"data folder {root} does not exist ({source}): {_HOW_TO_SET}")
    path = root / relpath
    if not path.is_file():
        raise UserError(f"data file {path} is missing (data folder {root}, {source}): {hint or _HOW_TO_SET}")
    return path
