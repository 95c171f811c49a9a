"""Build and run an exported C project on the host: `make TARGET=host`, then the harness binary.

The harness prints one line per test input ("input 3: ok" / "input 3: MISMATCH ...") and a last line
"SUMMARY inputs=N mismatches=M"; `run_host` parses it into a HarnessResult.
"""
from __future__ import annotations

import os
import re
import shutil
import subprocess
from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError

HOST_BINARY = Path("build") / "host" / "model_test"
_SUMMARY = re.compile(r"^SUMMARY inputs=(\d+) mismatches=(\d+)\s*$")
_ERROR_LINE = re.compile(r"(\berror\b|undefined reference|No rule to make target|\*\*\*)", re.IGNORECASE)
_INSTALL_HINT = "install it (Debian/Ubuntu: sudo apt-get install build-essential; macOS: xcode-select --install)"


class HarnessVerdict:
    """The verdict of a harness run, for any result with inputs, mismatches, lines and returncode."""

    @property
    def ok(self) -> bool:
        return self.returncode == 0 and self.mismatches == 0

    @property
    def mismatch_lines(self) -> list[str]:
        return [ln for ln in self.lines if ": MISMATCH" in ln or ": ERROR" in ln]


@dataclass(frozen=True)
class HarnessResult(HarnessVerdict):
    inputs: int
    mismatches: int
    lines: tuple[str, ...]  # every line the harness printed (stdout), in order
    returncode: int


def _first_error(output: str) -> str:
    lines = [ln.strip() for ln in output.splitlines() if ln.strip()]
    for ln in lines:
        if _ERROR_LINE.search(ln) and not ln.startswith("make"):
            return ln
    for ln in lines:
        if _ERROR_LINE.search(ln):
            return ln
    return lines[-1] if lines else "(no output)"


def run_make(project: Path, args: list[str], jobs: int | None, timeout: float, what: str):
    """`make -C project ARGS -jN` with its output captured; a timeout is a UserError naming `what` was built."""
    cmd = ["make", "-C", str(project), *args, f"-j{int(jobs or os.cpu_count() or 1)}"]
    try:
        return subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=timeout,
                              errors="replace")
    except subprocess.TimeoutExpired:
        raise UserError(f"{project}: the {what} build took longer than {timeout:g} s and was stopped") from None


def build_host(project_dir, jobs: int | None = None, timeout: float = 600) -> Path:
    """Run `make TARGET=host` in an exported project (jobs: parallel make, default one per CPU); returns the
    harness binary's path. A missing gcc/make or a failed build is a UserError quoting the first error line."""
    project = Path(project_dir)
    if not (project / "Makefile").is_file():
        raise UserError(f"{project}: no Makefile here: pass the folder written by export_c_project")
    for tool in ("make", "gcc"):
        if shutil.which(tool) is None:
            raise UserError(f"{tool} not found on PATH: the host build needs gcc and make; {_INSTALL_HINT}")
    proc = run_make(project, ["TARGET=host"], jobs, timeout, "host")
    if proc.returncode != 0:
        raise UserError(f"{project}: host build failed: {_first_error(proc.stdout)}")
    binary = project / HOST_BINARY
    if not binary.is_file():
        raise UserError(f"{project}: make succeeded but {HOST_BINARY} is missing: re-export the project")
    return binary


def run_host(binary, timeout: float = 60) -> HarnessResult:
    """Run the host harness and parse its SUMMARY line. A non-zero exit with a SUMMARY line is a result, not an
    error (mismatches); no SUMMARY line at all (a crash) or a timeout is a UserError."""
    binary = Path(binary)
    if not binary.is_file():
        raise UserError(f"{binary}: no such harness binary: build it first with build_host(project_dir)")
    try:
        proc = subprocess.run([str(binary.resolve())], cwd=binary.parent, stdout=subprocess.PIPE,
                              stderr=subprocess.PIPE, text=True, timeout=timeout, errors="replace")
    except subprocess.TimeoutExpired:
        raise UserError(f"{binary}: the harness did not finish within {timeout:g} s and was stopped "
                        f"(pass a larger timeout for many inputs)") from None
    except OSError as e:
        raise UserError(f"{binary}: cannot run it: {e.strerror or e}") from None
    lines = tuple(proc.stdout.splitlines())
    for ln in reversed(lines):
        m = _SUMMARY.match(ln)
        if m:
            return HarnessResult(int(m.group(1)), int(m.group(2)), lines, proc.returncode)
    last = lines[-1] if lines else (proc.stderr.strip().splitlines() or ["no output"])[-1]
    raise UserError(f"{binary}: the harness ended with exit code {proc.returncode} and no SUMMARY line "
                    f"(last output: {last})")
