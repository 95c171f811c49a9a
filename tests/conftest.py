"""Shared fixtures."""

import os
import shutil
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
# The package is not installed in the venv: make `import flexround_mcu` find the checkout when pytest runs
# from the console script (which, unlike `python -m pytest`, does not put the working directory on sys.path).
if str(REPO) not in sys.path:
    sys.path.insert(0, str(REPO))


def _on_ci() -> bool:
    return os.environ.get("CI", "").strip().lower() not in ("", "0", "false", "no")


def _shared_data_root() -> Path:
    """$FLEXROUND_MCU_DATA, else <repo>/../shared/data; skips locally but fails on CI (CI set) when it is missing,
    where silently skipping every real-data test would hide a broken setup."""
    root = Path(os.environ.get("FLEXROUND_MCU_DATA") or REPO.parent / "shared" / "data").resolve()
    if not ((root / "cifar10").is_dir() and (root / "mlperf_tiny").is_dir()):
        msg = f"shared data not found at {root} (no cifar10/ and mlperf_tiny/): set FLEXROUND_MCU_DATA=../shared/data"
        if _on_ci():
            pytest.fail(msg)
        pytest.skip(msg)
    return root


@pytest.fixture
def shared_data(monkeypatch) -> Path:
    """The real data folder (_shared_data_root), also exported as FLEXROUND_MCU_DATA so the loaders find it."""
    root = _shared_data_root()
    monkeypatch.setenv("FLEXROUND_MCU_DATA", str(root))
    return root


@pytest.fixture(scope="module")
def module_shared_data():
    """shared_data once per module, for module-scoped fixtures (exports reused by several tests)."""
    root = _shared_data_root()
    mp = pytest.MonkeyPatch()
    mp.setenv("FLEXROUND_MCU_DATA", str(root))
    yield root
    mp.undo()


ARM_TOOLS = ("arm-none-eabi-gcc", "arm-none-eabi-size", "arm-none-eabi-nm", "qemu-system-arm", "gcc", "make")


@pytest.fixture(scope="session")
def arm_tools():
    """The cross toolchain and QEMU: skip locally when missing, fail on CI (make setup installs them there)."""
    missing = [t for t in ARM_TOOLS if shutil.which(t) is None]
    if missing:
        msg = (f"{', '.join(missing)} not found: install with apt-get install --no-install-recommends "
               f"gcc-arm-none-eabi libnewlib-arm-none-eabi qemu-system-arm (or make setup)")
        if _on_ci():
            pytest.fail(msg)
        pytest.skip(msg)
