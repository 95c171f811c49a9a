"""The exported project as a library: its CMakeLists.txt (static library frk_model, the harness as its own
target, a toolchain file for arm-none-eabi-gcc) and `export --no-harness`; a user's own program, with its own
main.c, built against the folder with CMake on the host and for the Cortex-M7 under QEMU, bit for bit."""
from __future__ import annotations

import json
import shutil
import subprocess
from pathlib import Path

import pytest

from conftest import _on_ci
from flexround_mcu.cli import main
from helpers import cli_fails_cleanly

EXPORT = ["--target", "cortex-m7", "--method", "rtn", "--calib-size", "16", "--eval-size", "32", "--test-inputs",
          "4"]
HARNESS_ONLY = {"main.c", "test_data.c", "test_data.h"}
QEMU = ["qemu-system-arm", "-M", "mps2-an500", "-nographic", "-semihosting-config", "enable=on,target=native",
        "-kernel"]

# A user's program: its own main, the model through frk_model_invoke only. The test inputs and expected outputs
# come from the harness export's test_data.c (the same model), copied into the program as the user's data.
USER_MAIN = r"""
#include <string.h>
#include "model.h"
#include "test_data.h"
#if defined(USER_ON_BOARD)
#include "frk_board.h"
#define say(s) frk_board_puts(s)
#else
#include <stdio.h>
#define say(s) puts(s)
#endif

int main(void)
{
    static int8_t out[FRK_MODEL_OUTPUT_SIZE];
    int i, wrong = 0;
    for (i = 0; i < FRK_TEST_COUNT; ++i) {
        if (frk_model_invoke(frk_test_inputs[i], out) != 0 ||
            memcmp(out, frk_expected_outputs[i], sizeof out) != 0) {
            ++wrong;
        }
    }
    say(wrong == 0 ? "user program: every output matches" : "user program: MISMATCH");
    return wrong == 0 ? 0 : 1;
}
"""

USER_CMAKE = """cmake_minimum_required(VERSION 3.13)
project(user_app C)
add_subdirectory({model} frk_model)
add_executable(app main.c test_data.c)
target_link_libraries(app PRIVATE frk_model)
if(CMAKE_SYSTEM_NAME STREQUAL "Generic")
    # the user's own board support: here, the QEMU board files of the harness export
    target_sources(app PRIVATE {data}/boards/frk_startup.c {data}/boards/frk_semihost.c {data}/boards/frk_libc.c)
    set_source_files_properties({data}/boards/frk_libc.c PROPERTIES COMPILE_OPTIONS -fno-tree-loop-distribute-patterns)
    target_include_directories(app PRIVATE {data}/boards)
    target_compile_definitions(app PRIVATE USER_ON_BOARD)
    target_link_options(app PRIVATE -nostdlib -L{data}/boards -T {data}/boards/${{FRK_LINKER_SCRIPT}})
    target_link_libraries(app PRIVATE gcc)
endif()
"""


@pytest.fixture(scope="module")
def cmake():
    tool = shutil.which("cmake")
    if tool is None:
        msg = "cmake not found: apt-get install --no-install-recommends cmake (or make setup)"
        if _on_ci():
            pytest.fail(msg)
        pytest.skip(msg)
    return tool


@pytest.fixture(scope="module")
def exports(tmp_path_factory, request) -> tuple[Path, Path]:
    """The same model exported twice for the M7: with its harness, and with --no-harness."""
    request.getfixturevalue("module_shared_data")
    request.getfixturevalue("arm_tools")
    root = tmp_path_factory.mktemp("cmake")
    for name, extra in (("full", []), ("lib", ["--no-harness"])):
        assert main(["export", "resnet8", *EXPORT, *extra, "--out", str(root / name)]) == 0
    return root / "full", root / "lib"


def _files(folder: Path) -> dict[str, bytes]:
    return {str(p.relative_to(folder)): p.read_bytes() for p in folder.rglob("*")
            if p.is_file() and p.relative_to(folder).parts[0] != "build"}


def _cmake_build(cmake: str, src: Path, build: Path, *args) -> None:
    for cmd in ([cmake, "-S", src, "-B", build, "-DCMAKE_BUILD_TYPE=", *args], [cmake, "--build", build, "-j2"]):
        proc = subprocess.run([str(c) for c in cmd], capture_output=True, text=True, timeout=600)
        assert proc.returncode == 0, proc.stdout[-3000:] + proc.stderr[-3000:]


def test_no_harness_export_is_the_library_of_the_checked_project(exports, capsys):
    full, lib = exports
    f, g = _files(full), _files(lib)
    assert HARNESS_ONLY <= set(f) and not HARNESS_ONLY & set(g)
    assert any(k.startswith("boards/") for k in f) and not any(k.startswith("boards/") for k in g)
    assert {"CMakeLists.txt", "cmake/arm-none-eabi.cmake", "Makefile", "model.c", "weights.c"} <= set(g)
    shared = [k for k in g if k == "model.c" or k.startswith(("weights.", "model.h", "kernels/"))]
    assert len(shared) > 10 and all(f[k] == g[k] for k in shared)  # byte for byte what the harness runs checked
    report = json.loads((lib / "report.json").read_text())
    assert report["harness"] is False and json.loads((full / "report.json").read_text())["harness"] is True
    assert report["bitexact"]["host_c"]["mismatches"] == 0 and report["bitexact"]["qemu"]["mismatches"] == 0
    assert json.loads((lib / "project.json").read_text())["harness"] is False
    assert "exported with --no-harness: it has no test harness" in cli_fails_cleanly(capsys, "run", str(lib))
    assert main(["build", str(lib), "--target", "host"]) == 0
    assert (lib / "build/host/libfrk_model.a").is_file() and "libfrk_model.a" in capsys.readouterr().out


def test_exported_cmake_builds_and_runs_its_harness_on_host_and_m7(exports, cmake, tmp_path):
    full, _ = exports
    _cmake_build(cmake, full, tmp_path / "host")
    proc = subprocess.run([str(tmp_path / "host" / "frk_model_test")], capture_output=True, text=True, timeout=60)
    assert proc.returncode == 0 and proc.stdout.strip().splitlines()[-1] == "SUMMARY inputs=4 mismatches=0"
    _cmake_build(cmake, full, tmp_path / "m7", f"-DCMAKE_TOOLCHAIN_FILE={full}/cmake/arm-none-eabi.cmake",
                 "-DFRK_TARGET=cortex-m7")
    proc = subprocess.run(["timeout", "120", *QEMU, str(tmp_path / "m7" / "frk_model_test.elf")],
                          capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "SUMMARY inputs=4 mismatches=0" in (proc.stdout + proc.stderr).splitlines()  # semihosting: stderr


@pytest.mark.parametrize("where", ["host", "cortex-m7"])
def test_user_program_links_the_library_only_export(exports, cmake, tmp_path, where):
    full, lib = exports
    user = tmp_path / "user"
    user.mkdir()
    (user / "main.c").write_text(USER_MAIN)
    for name in ("test_data.c", "test_data.h"):  # the user's own data: the harness export's test inputs
        shutil.copy2(full / name, user / name)
    (user / "CMakeLists.txt").write_text(USER_CMAKE.format(model=lib, data=full))
    if where == "host":
        _cmake_build(cmake, user, tmp_path / "b")
        cmd = [str(tmp_path / "b" / "app")]
    else:
        _cmake_build(cmake, user, tmp_path / "b", f"-DCMAKE_TOOLCHAIN_FILE={lib}/cmake/arm-none-eabi.cmake",
                     "-DFRK_TARGET=cortex-m7")
        cmd = ["timeout", "120", *QEMU, str(tmp_path / "b" / "app")]
    proc = subprocess.run(cmd, capture_output=True, text=True, timeout=180)
    assert proc.returncode == 0, proc.stdout + proc.stderr
    assert "user program: every output matches" in proc.stdout + proc.stderr
