"""The wheel as a user gets it: built from the checkout, installed (not editable) into a fresh virtual
environment, and run from a folder outside the checkout; the templates and kernels must travel inside it."""
from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
import sysconfig
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
PACKAGE_FILES = ("flexround_mcu/templates/model.c.j2", "flexround_mcu/templates/Makefile.j2",
                 "flexround_mcu/firmware/kernels/frk_nn.h", "flexround_mcu/firmware/kernels/frk_convolve_s8.c",
                 "flexround_mcu/firmware/kernels/frk_convolve_dsp.c", "flexround_mcu/firmware/kernels/frk_convolve_mve.c",
                 "flexround_mcu/firmware/boards/frk_startup.c", "flexround_mcu/firmware/boards/mps2-an500.ld",
                 "flexround_mcu/firmware/tools/insncount.c")


# no PYTHONPATH: nothing of the checkout may leak into the installed environment
ENV = {k: v for k, v in os.environ.items() if k not in ("PYTHONPATH", "VIRTUAL_ENV")}


def _run(cmd, **kw) -> subprocess.CompletedProcess:
    proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, env=ENV, **kw)
    assert proc.returncode == 0, f"{' '.join(map(str, cmd))}: rc {proc.returncode}\n{proc.stdout}\n{proc.stderr}"
    return proc


@pytest.fixture(scope="module")
def wheel(tmp_path_factory) -> Path:
    out = tmp_path_factory.mktemp("wheel")
    # built from a copy, so the build leaves no build/ or egg-info in the checkout
    src = out / "src"
    ignore = shutil.ignore_patterns("__pycache__", "*.pyc", "*.egg-info")
    shutil.copytree(REPO / "flexround_mcu", src / "flexround_mcu", ignore=ignore)
    for name in ("pyproject.toml", "README.md"):
        shutil.copy2(REPO / name, src / name)
    # --no-build-isolation: the venv's setuptools builds it (no download); --no-deps: only our own wheel
    _run([sys.executable, "-m", "pip", "wheel", "--quiet", "--no-deps", "--no-build-isolation", "-w", out, src])
    wheels = list(out.glob("flexround_mcu-*.whl"))
    assert len(wheels) == 1, wheels
    return wheels[0]


def test_wheel_carries_templates_kernels_and_boards(wheel):
    names = set(zipfile.ZipFile(wheel).namelist())
    assert [f for f in PACKAGE_FILES if f not in names] == []
    kernels = {n for n in names if n.startswith("flexround_mcu/firmware/kernels/")}
    on_disk = {f"flexround_mcu/firmware/kernels/{p.name}" for p in (REPO / "flexround_mcu/firmware/kernels").iterdir()}
    assert kernels == on_disk
    assert not any(n.startswith(("tests/", "benchmarks/")) or "/data/" in n and n.endswith(".npz") for n in names)


def test_installed_wheel_exports_bit_exact_outside_the_checkout(wheel, shared_data, tmp_path):
    venv = tmp_path / "venv"
    _run([sys.executable, "-m", "venv", "--without-pip", venv])
    python = venv / "bin" / "python"
    _run([sys.executable, "-m", "pip", "--python", python, "install", "--quiet", "--no-deps", "--no-index", wheel])
    # the fresh environment reuses this one's installed dependencies (torch, numpy, ...) through a path entry
    # (written after the install, or pip would see this checkout's editable install there and skip ours); a plain
    # path entry does not run the .pth files there, so the editable install stays out of the import path
    site = Path(_run([python, "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"]).stdout.strip())
    (site / "reuse_deps.pth").write_text(sysconfig.get_paths()["purelib"] + "\n")

    work = tmp_path / "user"
    work.mkdir()
    where = _run([python, "-c", "import flexround_mcu, flexround_mcu.resources as r; "
                  "print(flexround_mcu.__file__); print(r.TEMPLATES_DIR)"], cwd=work).stdout.split()
    assert all(Path(w).is_relative_to(venv) for w in where), where  # the wheel's copy, not the checkout's

    proc = subprocess.run([venv / "bin" / "flexround-mcu", "export", "resnet8", "--target", "host", "--method", "rtn",
                           "--calib-size", "16", "--eval-size", "32", "--test-inputs", "4", "--out", "model"],
                          cwd=work, env=ENV, capture_output=True, text=True)
    assert proc.returncode == 0, proc.stderr
    report = json.loads((work / "model" / "report.json").read_text())
    assert report["bitexact"]["host_c"] == {"inputs": 4, "mismatches": 0}
    assert (work / "model" / "kernels" / "frk_nn.h").is_file() and (work / "model" / "Makefile").is_file()
