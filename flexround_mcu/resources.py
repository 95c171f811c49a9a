"""Where the files the exporter copies and renders live: inside the package, so a wheel carries them.

templates/           the Jinja2 templates of an exported project (Makefile, model.c, weights.c, ...)
firmware/kernels/    the C kernels (frk_nn.h, frk_*.c), copied into every project as kernels/
firmware/boards/     the Cortex-M startup, semihosting and linker scripts, copied as boards/
firmware/tools/      the QEMU instruction-count plugin's source (insncount.c), built on demand

Found through importlib.resources, so the same code serves a checkout, an editable install and a wheel.
"""
from __future__ import annotations

from importlib import resources
from pathlib import Path

from .errors import UserError


def package_dir(*parts: str) -> Path:
    """The folder flexround_mcu/<parts...> as a file-system path (the C compiler and make need real files)."""
    root = resources.files("flexround_mcu")
    where = root.joinpath(*parts)
    if not isinstance(where, Path):  # a zip import: the files are not on disk
        raise UserError(f"flexround_mcu is imported from {root}, not from a folder: install it unpacked "
                        f"(pip install flexround-mcu) so its templates and kernels are files")
    return where


TEMPLATES_DIR = package_dir("templates")
KERNELS_DIR = package_dir("firmware", "kernels")
BOARDS_DIR = package_dir("firmware", "boards")
TOOLS_DIR = package_dir("firmware", "tools")
