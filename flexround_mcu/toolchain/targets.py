"""The one table of build targets: the host, and the Cortex-M cores on QEMU's Arm MPS2/MPS3 boards.

The exporter renders the project's Makefile from this table (flexround_mcu/templates/Makefile.j2), and toolchain/qemu.py
reads it to run the firmware, so a target is added here and nowhere else. Board files (startup, semihosting,
linker scripts) live in flexround_mcu/firmware/boards/ and are copied into every exported project as boards/.
"""
from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError
from ..resources import BOARDS_DIR


INSTALL_HINT = ("install it with `sudo apt-get install --no-install-recommends gcc-arm-none-eabi "
                "libnewlib-arm-none-eabi qemu-system-arm` (or `make setup` in the repository)")


@dataclass(frozen=True)
class Target:
    name: str
    cc: str                      # the C compiler the Makefile uses
    cpu_flags: tuple[str, ...]   # -mcpu/-mthumb/float ABI and FPU (empty for the host)
    qemu_machine: str | None     # qemu-system-arm -M value; None: runs natively
    linker_script: str | None    # file in flexround_mcu/firmware/boards/ (copied to <project>/boards/)
    board: str | None            # the board's name (the linker script's memory map)
    description: str
    kernels: str = "portable"    # the kernel set an export for this target uses (codegen/kernels.py)

    @property
    def is_cortex_m(self) -> bool:
        return self.qemu_machine is not None

    @property
    def binary(self) -> Path:
        """The built harness, relative to the project folder."""
        return Path("build") / self.name / ("model_test.elf" if self.is_cortex_m else "model_test")

    @property
    def map_file(self) -> Path | None:
        return Path("build") / self.name / "model_test.map" if self.is_cortex_m else None


TARGETS: dict[str, Target] = {
    "host": Target("host", "gcc", (), None, None, None, "the build machine (gcc), run natively"),
    "cortex-m4": Target(
        "cortex-m4", "arm-none-eabi-gcc",
        ("-mcpu=cortex-m4", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv4-sp-d16"),
        "mps2-an386", "mps2-an386.ld", "mps2-an386",
        "Cortex-M4F on QEMU mps2-an386 (4 MiB code SSRAM, 4 MiB data SSRAM)", "dsp"),
    "cortex-m7": Target(
        "cortex-m7", "arm-none-eabi-gcc",
        ("-mcpu=cortex-m7", "-mthumb", "-mfloat-abi=hard", "-mfpu=fpv5-d16"),
        "mps2-an500", "mps2-an500.ld", "mps2-an500",
        "Cortex-M7 on QEMU mps2-an500 (4 MiB code SSRAM, 4 MiB data SSRAM)", "dsp"),
    "cortex-m55": Target(
        "cortex-m55", "arm-none-eabi-gcc",
        ("-mcpu=cortex-m55", "-mthumb", "-mfloat-abi=hard"),
        "mps3-an547", "mps3-an547.ld", "mps3-an547",
        "Cortex-M55 on QEMU mps3-an547 (512 KiB ITCM for code, 512 KiB DTCM for data)", "mve"),
}
CORTEX_M = tuple(name for name, t in TARGETS.items() if t.is_cortex_m)

# Board files copied into every project (boards/<name>); the Makefile compiles the .c files for Cortex-M targets.
BOARD_SOURCES = ("frk_startup.c", "frk_semihost.c", "frk_libc.c")
BOARD_HEADERS = ("frk_board.h",)


def get_target(name: str) -> Target:
    """The target called `name`, or a UserError listing the valid names."""
    try:
        return TARGETS[name]
    except (KeyError, TypeError):
        raise UserError(f"unknown target {name!r}: choose one of {', '.join(TARGETS)}") from None


def board_files() -> list[Path]:
    """The files of flexround_mcu/firmware/boards/ that an exported project carries (sources, headers, linker scripts)."""
    names = set(BOARD_SOURCES) | set(BOARD_HEADERS) | {"frk_sections.ld"}
    names |= {t.linker_script for t in TARGETS.values() if t.linker_script}
    paths = [BOARDS_DIR / n for n in sorted(names)]
    missing = [p.name for p in paths if not p.is_file()]
    if missing:
        raise UserError(f"board files missing from {BOARDS_DIR}: {', '.join(missing)}: reinstall "
                        f"flexround-mcu (its firmware/boards/ folder is incomplete)")
    return paths
