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


@pytest.fixture
def shared_data(monkeypatch) -> Path:
    """The real data folder: $FLEXROUND_MCU_DATA, else <repo>/../shared/data.

    It is also exported as FLEXROUND_MCU_DATA so the loaders find it. If it is missing the test skips locally
    but fails on CI (CI set), where silently skipping every real-data test would hide a broken setup.
    """
    root = Path(os.environ.get("FLEXROUND_MCU_DATA") or REPO.parent / "shared" / "data").resolve()
    if not ((root / "cifar10").is_dir() and (root / "mlperf_tiny").is_dir()):
        msg = f"shared data not found at {root} (no cifar10/ and mlperf_tiny/): set FLEXROUND_MCU_DATA=../shared/data"
        if _on_ci():
            pytest.fail(msg)
        pytest.skip(msg)
    monkeypatch.setenv("FLEXROUND_MCU_DATA", str(root))
    return root


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
