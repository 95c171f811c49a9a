"""Build an exported C project for a Cortex-M target, run it under qemu-system-arm, measure its footprint and
count its instructions per inference.

    build_project(dir, target=None)       make TARGET=<target> (the project's own target by default)
    run_project(dir, target=None)         build (incrementally) and run; returns a TargetResult
    run_on_target(dir, target)            the same, with the target named explicitly

The firmware prints the host harness's lines ("input 3: ok", ..., "SUMMARY inputs=N mismatches=M") by semihosting,
then "board: stack used U of S bytes", and exits with the harness's code (0 only if every output matched;
126 = stack overflow, 127 = fault) through SYS_EXIT_EXTENDED, which QEMU turns into its own exit code.

Footprint, from arm-none-eabi-size and nm on the ELF: flash = text + data, RAM = data + bss (the arena, the other
statics and the stack reservation); the weight, test-data and arena bytes are the sizes of their symbols.

Instructions per inference: flexround_mcu/firmware/tools/insncount.c, a QEMU TCG plugin built on demand with the host gcc,
counts every executed guest instruction, and separately those executed from the start of
frk_board_invoke_begin() to the start of frk_board_invoke_end(), which the harness calls around each
frk_model_invoke(). instructions_per_inference = that region's count / the number of regions (= inputs): the
mean over the test inputs, including about 6 instructions of call overhead from the two markers. These are
instruction counts of QEMU's functional model, not cycles (QEMU models no pipeline, caches or wait states).

Per op: the generated frk_model_invoke calls frk_board_layer_end() after each op (FRK_LAYER_END in model.c), and
the plugin, given that address too, splits each region at those calls: layer_instructions[k] is the mean per
inference of the instructions from the end of op k-1's mark (or the region's start) to op k's, so op k's kernel
call plus 2 instructions of the marker's own call and return (a RESHAPE, which has no code, shows just those);
layer_tail_instructions the rest, after the last mark (the output copy, the return, the end marker's call).
The layers and the tail partition the region: their sum is instructions_per_inference. An ELF without the
marker (a project exported before it existed) is counted as before, with layer_instructions None.
"""
from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import tempfile
from dataclasses import dataclass
from pathlib import Path

from ..errors import UserError
from ..resources import TOOLS_DIR
from .host import HarnessVerdict, _first_error, build_host, run_host, run_make
from .targets import INSTALL_HINT, Target, get_target

PROJECT_FILE = "project.json"
TEST_DATA_SYMBOLS = ("frk_test_inputs", "frk_expected_outputs")
ARENA_SYMBOL = "frk_arena"
SCRATCH_SYMBOL = "frk_scratch"  # the fast kernels' working memory (model.c), absent when no kernel needs any
MARKERS = ("frk_board_invoke_begin", "frk_board_invoke_end")
LAYER_MARKER = "frk_board_layer_end"
PLUGIN_SOURCE = TOOLS_DIR / "insncount.c"
EXIT_STACK_OVERFLOW = 126
EXIT_FAULT = 127

_SUMMARY = re.compile(r"^SUMMARY inputs=(\d+) mismatches=(\d+)\s*$")
_STACK = re.compile(r"^board: stack used (\d+) of (\d+) bytes\s*$")
_COUNTS = re.compile(r"total=(\d+) region=(\d+) regions=(\d+)")
_LAYERS = re.compile(r"^layers=([\d,]*) tail=(\d+) marks=(\d+)\s*$", re.MULTILINE)
_OVERFLOW = re.compile(r"region `?(\w+)'? overflowed by (\d+) bytes")


@dataclass(frozen=True)
class TargetResult(HarnessVerdict):
    """One run of an exported project's test harness on a target.

    inputs/mismatches: from the SUMMARY line; lines: the harness's lines in order (the same as the host's);
    board_lines: the board's own lines ("board: ..."). For the host target the footprint and instruction fields
    are None. flash_bytes = text + data of the ELF (code, weights, test data, .data image); ram_bytes = data + bss
    (arena, statics, stack reservation); weight_bytes / test_data_bytes / arena_bytes: the sizes of those symbols.
    layer_instructions: the mean instructions per inference of each op, in graph order (index = op index), and
    layer_tail_instructions those after the last op's mark (see the module docstring); None when not counted.
    """

    target: str
    inputs: int
    mismatches: int
    returncode: int
    lines: tuple[str, ...]
    board_lines: tuple[str, ...] = ()
    binary: Path | None = None
    text_bytes: int | None = None
    data_bytes: int | None = None
    bss_bytes: int | None = None
    flash_bytes: int | None = None
    ram_bytes: int | None = None
    weight_bytes: int | None = None
    test_data_bytes: int | None = None
    arena_bytes: int | None = None
    scratch_bytes: int | None = None
    stack_bytes: int | None = None
    stack_used_bytes: int | None = None
    instructions_total: int | None = None
    instructions_invoke: int | None = None
    instructions_per_inference: float | None = None
    layer_instructions: tuple[float, ...] | None = None
    layer_tail_instructions: float | None = None

    @property
    def ram_split(self) -> dict | None:
        """The RAM the model needs on the board: arena + scratch + statics (the rest of .data and .bss: board,
        harness and kernel variables, the stack reservation left out) + the stack the board measured."""
        parts = (self.ram_bytes, self.arena_bytes, self.scratch_bytes, self.stack_bytes, self.stack_used_bytes)
        if any(v is None for v in parts):
            return None
        statics = self.ram_bytes - self.arena_bytes - self.scratch_bytes - self.stack_bytes
        return {"arena": self.arena_bytes, "scratch": self.scratch_bytes, "statics": statics,
                "stack_used": self.stack_used_bytes, "stack_reserved": self.stack_bytes,
                "total": self.arena_bytes + self.scratch_bytes + statics + self.stack_used_bytes}

    @property
    def model_flash_bytes(self) -> int | None:
        """Flash without the harness's test inputs and expected outputs (code, weights, tables, startup)."""
        if self.flash_bytes is None or self.test_data_bytes is None:
            return None
        return self.flash_bytes - self.test_data_bytes

    def to_dict(self) -> dict:
        keys = ("target", "inputs", "mismatches", "returncode", "flash_bytes", "model_flash_bytes", "ram_bytes",
                "text_bytes", "data_bytes", "bss_bytes", "weight_bytes", "test_data_bytes", "arena_bytes",
                "stack_bytes", "stack_used_bytes", "instructions_total", "instructions_invoke",
                "instructions_per_inference", "layer_instructions", "layer_tail_instructions")
        d = {k: getattr(self, k) for k in keys}
        if d["layer_instructions"] is not None:
            d["layer_instructions"] = list(d["layer_instructions"])
        return d


@dataclass(frozen=True)
class Footprint:
    text: int
    data: int
    bss: int
    symbols: dict[str, tuple[int, int]]  # name -> (address, size)

    @property
    def flash(self) -> int:
        return self.text + self.data

    @property
    def ram(self) -> int:
        return self.data + self.bss

    def size_of(self, names) -> int:
        return sum(self.symbols[n][1] for n in names if n in self.symbols)


# -------------------------------------------------------------------------------------------------- helpers
def _require(tool: str, why: str) -> str:
    path = shutil.which(tool)
    if path is None:
        raise UserError(f"{tool} not found on PATH: {why}; {INSTALL_HINT}")
    return path


def check_toolchain(target: str, build: bool = True, run: bool = True) -> None:
    """UserError naming the first missing tool and how to install it, if `target` cannot be built (build=True)
    or run and measured (run=True). The host target needs only gcc and make (checked by build_host)."""
    t = get_target(target)
    if not t.is_cortex_m:
        return
    if build:
        _require("arm-none-eabi-gcc", f"building for {target} needs the Arm cross compiler")
        if shutil.which("make") is None:
            raise UserError("make not found on PATH: the firmware build runs make; install it (Debian/Ubuntu: "
                            "sudo apt-get install make)")
    if run:
        _require("qemu-system-arm", f"running {target} firmware needs QEMU's Arm system emulator")
        for tool in ("arm-none-eabi-size", "arm-none-eabi-nm"):
            _require(tool, f"measuring {target} firmware needs the Arm binutils")


def project_target(project_dir) -> str:
    """The default target of an exported project (project.json; older exports: the Makefile's TARGET ?= line)."""
    project = Path(project_dir)
    meta = _project_meta(project)
    if meta.get("target"):
        return str(meta["target"])
    makefile = project / "Makefile"
    if makefile.is_file():
        m = re.search(r"^TARGET \?= (\S+)", makefile.read_text(errors="replace"), re.MULTILINE)
        if m:
            return m.group(1)
    raise UserError(f"{project}: not an exported C project (no {PROJECT_FILE} or Makefile): pass the folder "
                    f"written by `flexround-mcu export`")


def _project_meta(project: Path) -> dict:
    path = project / PROJECT_FILE
    if not path.is_file():
        return {}
    try:
        meta = json.loads(path.read_text())
    except (OSError, ValueError) as e:
        raise UserError(f"{path}: unreadable ({e}): re-export the project") from None
    return meta if isinstance(meta, dict) else {}


def _resolve(project_dir, target: str | None) -> tuple[Path, Target]:
    project = Path(project_dir)
    if not (project / "Makefile").is_file():
        raise UserError(f"{project}: no Makefile here: pass the folder written by export_c_project")
    return project, get_target(target or project_target(project))


def _build_dir(t: Target, extra_cflags: tuple[str, ...]) -> str:
    if not extra_cflags:
        return f"build/{t.name}"
    tag = hashlib.sha256("\0".join(extra_cflags).encode()).hexdigest()[:8]
    return f"build/{t.name}-{tag}"  # other flags, other objects: never mixed with the plain build


# ------------------------------------------------------------------------------------------------- build
def build_project(project_dir, target: str | None = None, *, jobs: int | None = None, timeout: float = 600,
                  extra_cflags: tuple[str, ...] | list[str] = ()) -> Path:
    """`make TARGET=<target>` in an exported project; returns the harness binary (an ELF for Cortex-M targets).

    target: one of toolchain.targets.TARGETS; default: the project's own (project.json). extra_cflags (e.g.
    ["-DFRK_BOARD_TEST_HANG"]) build into their own folder, build/<target>-<hash>/. A missing compiler or a failed
    build is a UserError quoting the first error line.
    """
    project, t = _resolve(project_dir, target)
    extra = tuple(extra_cflags)
    if _project_meta(project).get("harness") is False:
        return _build_library(project, t, jobs, timeout)
    if not t.is_cortex_m:
        if extra:
            raise UserError("extra_cflags are supported for the Cortex-M targets only")
        return build_host(project, jobs=jobs, timeout=timeout)
    check_toolchain(t.name, build=True, run=False)
    build_dir = _build_dir(t, extra)
    args = [f"TARGET={t.name}", f"BUILD_DIR={build_dir}"] + (["EXTRA_CFLAGS=" + " ".join(extra)] if extra else [])
    proc = run_make(project, args, jobs, timeout, t.name)
    if proc.returncode != 0:
        m = _OVERFLOW.search(proc.stdout)
        if m:
            raise UserError(f"{project}: the {t.name} firmware does not fit the {t.board} board: region {m.group(1)} "
                            f"overflowed by {m.group(2)} bytes (boards/{t.linker_script}): export fewer test "
                            f"inputs or a smaller model")
        raise UserError(f"{project}: {t.name} build failed: {_first_error(proc.stdout)}")
    elf = project / build_dir / t.binary.name
    if not elf.is_file():
        raise UserError(f"{project}: make succeeded but {build_dir}/{t.binary.name} is missing: re-export the "
                        f"project")
    return elf


def _build_library(project: Path, t: Target, jobs: int | None, timeout: float) -> Path:
    """`make TARGET=<target> lib` in a library-only export (--no-harness): build/<target>/libfrk_model.a."""
    if t.is_cortex_m:
        check_toolchain(t.name, build=True, run=False)
    proc = run_make(project, [f"TARGET={t.name}", "lib"], jobs, timeout, t.name)
    if proc.returncode != 0:
        raise UserError(f"{project}: {t.name} library build failed: {_first_error(proc.stdout)}")
    return project / "build" / t.name / "libfrk_model.a"


def _require_harness(project: Path) -> None:
    if _project_meta(project).get("harness") is False:
        raise UserError(f"{project} was exported with --no-harness: it has no test harness to run; link its "
                        f"library into your program (make lib, or CMakeLists.txt), or export without --no-harness")


# ------------------------------------------------------------------------------------------------ footprint
def footprint(elf) -> Footprint:
    """text/data/bss (arm-none-eabi-size, Berkeley format) and the sized symbols (arm-none-eabi-nm) of an ELF."""
    elf = Path(elf)
    size = _require("arm-none-eabi-size", "measuring the firmware needs the Arm binutils")
    nm = _require("arm-none-eabi-nm", "measuring the firmware needs the Arm binutils")
    out = _tool_output([size, "-B", str(elf)], elf)
    rows = [ln.split() for ln in out.splitlines()[1:] if ln.strip()]
    if not rows or len(rows[0]) < 3 or not all(v.isdigit() for v in rows[0][:3]):
        raise UserError(f"{elf}: unexpected arm-none-eabi-size output: {out.strip()[:200]}")
    text, data, bss = (int(v) for v in rows[0][:3])
    symbols: dict[str, tuple[int, int]] = {}
    for ln in _tool_output([nm, "-S", "--defined-only", str(elf)], elf).splitlines():
        parts = ln.split()
        if len(parts) == 4:  # address size type name (only sized symbols have four fields)
            symbols.setdefault(parts[3], (int(parts[0], 16), int(parts[1], 16)))
        elif len(parts) == 3 and parts[2] not in symbols:  # address type name
            symbols[parts[2]] = (int(parts[0], 16), 0)
    return Footprint(text, data, bss, symbols)


def _tool_output(cmd: list[str], elf: Path) -> str:
    try:
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True, timeout=60,
                              errors="replace")
    except (OSError, subprocess.TimeoutExpired) as e:
        raise UserError(f"{elf}: {Path(cmd[0]).name} failed: {e}") from None
    if proc.returncode != 0:
        raise UserError(f"{elf}: {Path(cmd[0]).name} failed: {(proc.stderr.strip() or 'no output')[:200]}: "
                        f"rebuild the firmware")
    return proc.stdout


# ------------------------------------------------------------------------------------ instruction counting
def _cache_dir() -> Path:
    env = os.environ.get("FLEXROUND_MCU_CACHE")
    if env:
        return Path(env).expanduser()
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "flexround-mcu" / "tools"


def insncount_plugin() -> Path:
    """The instruction-count plugin (flexround_mcu/firmware/tools/insncount.c), built with the host gcc into a cache folder
    ($FLEXROUND_MCU_CACHE, else ~/.cache/flexround-mcu/tools) keyed by the source's hash; built once."""
    if not PLUGIN_SOURCE.is_file():
        raise UserError(f"{PLUGIN_SOURCE} is missing: reinstall flexround-mcu (its firmware/tools/ folder is incomplete)")
    source = PLUGIN_SOURCE.read_bytes()
    name = f"libinsncount-{hashlib.sha256(source).hexdigest()[:12]}.so"
    for folder in (_cache_dir(), Path(tempfile.gettempdir()) / f"flexround-mcu-{os.getuid()}"):
        lib = folder / name
        if lib.is_file():
            return lib
        try:
            folder.mkdir(parents=True, exist_ok=True)
        except OSError:
            continue
        gcc = shutil.which("gcc")
        if gcc is None:
            raise UserError("gcc not found on PATH: counting instructions builds a QEMU plugin with the host gcc; "
                            "install it (Debian/Ubuntu: sudo apt-get install build-essential) or pass "
                            "count_instructions=False")
        tmp = folder / f".{name}.{os.getpid()}.tmp"
        cmd = [gcc, "-O2", "-shared", "-fPIC", "-fvisibility=hidden", "-o", str(tmp), str(PLUGIN_SOURCE)]
        proc = subprocess.run(cmd, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True, timeout=120,
                              errors="replace")
        if proc.returncode != 0:
            tmp.unlink(missing_ok=True)
            raise UserError(f"{PLUGIN_SOURCE}: building the QEMU plugin failed: {_first_error(proc.stdout)}")
        os.replace(tmp, lib)
        return lib
    raise UserError(f"cannot create a cache folder for the QEMU plugin ({_cache_dir()}): set FLEXROUND_MCU_CACHE "
                    f"to a writable folder")


def _qemu_arg(value: str) -> str:
    return value.replace(",", ",,")  # QEMU's option syntax: a literal comma is doubled


# ------------------------------------------------------------------------------------------------------ run
def default_timeout(project_dir) -> float:
    """A generous run timeout: 60 s plus 10 s per test input (ResNet-8 takes well under 1 s per input)."""
    n = _project_meta(Path(project_dir)).get("test_inputs", 100)
    return 60.0 + 10.0 * (int(n) if isinstance(n, int) else 100)


def run_firmware(elf, target: str, *, timeout: float = 600, count_instructions: bool = True,
                 weight_arrays: tuple[str, ...] | list[str] = ()) -> TargetResult:
    """Run a built Cortex-M harness under qemu-system-arm and parse its output (see the module docstring).

    A guest that does not exit within `timeout` seconds is killed: UserError. So is a run without a SUMMARY
    line (a fault, exit 127, or no semihosting) and a stack overflow (exit 126). Mismatches are a result
    (returncode 1, mismatches > 0), not an error.
    """
    t = get_target(target)
    if not t.is_cortex_m:
        raise UserError(f"run_firmware runs Cortex-M firmware; target {target!r} is not one (use run_project)")
    elf = Path(elf)
    if not elf.is_file():
        raise UserError(f"{elf}: no such firmware: build it first (flexround-mcu build DIR)")
    check_toolchain(t.name, build=False, run=True)
    qemu = shutil.which("qemu-system-arm")
    fp = footprint(elf)
    cmd = [qemu, "-M", t.qemu_machine, "-nographic", "-semihosting-config", "enable=on,target=native",
           "-kernel", str(elf)]
    with tempfile.TemporaryDirectory(prefix="flexround-qemu-") as tmp:
        counts_file = Path(tmp) / "counts.txt"
        if count_instructions:
            missing = [m for m in MARKERS if m not in fp.symbols]
            if missing:
                raise UserError(f"{elf}: no symbol {missing[0]}: the firmware was not built from an exported "
                                f"project's harness; re-export and rebuild it")
            begin, end = (fp.symbols[m][0] for m in MARKERS)
            plugin = insncount_plugin()
            layer = f",layer={fp.symbols[LAYER_MARKER][0]:#x}" if LAYER_MARKER in fp.symbols else ""
            cmd += ["-plugin", f"{_qemu_arg(str(plugin))},outfile={_qemu_arg(str(counts_file))},"
                               f"begin={begin:#x},end={end:#x}{layer}"]
        try:
            proc = subprocess.run(cmd, stdin=subprocess.DEVNULL, stdout=subprocess.PIPE, stderr=subprocess.PIPE,
                                  timeout=timeout, text=True, errors="replace")
        except subprocess.TimeoutExpired:
            raise UserError(f"{elf}: the guest hung and was stopped after {timeout:g} s (qemu-system-arm -M "
                            f"{t.qemu_machine}): check the firmware, or pass a larger timeout for many inputs"
                            ) from None
        except OSError as e:
            raise UserError(f"{elf}: cannot run qemu-system-arm: {e.strerror or e}") from None
        counts = counts_file.read_text() if counts_file.is_file() else ""

    # Semihosting output goes to QEMU's stderr (no chardev given); serial output, if any, to stdout.
    console = proc.stderr.splitlines() + proc.stdout.splitlines()
    board = tuple(ln for ln in console if ln.startswith("board: "))
    lines = tuple(ln for ln in proc.stderr.splitlines() if not ln.startswith(("board: ", "qemu-system-arm:")))
    summary = next((m for m in map(_SUMMARY.match, reversed(lines)) if m), None)
    stack_top, stack_limit = fp.symbols.get("__stack_top"), fp.symbols.get("__stack_limit")
    stack_bytes = (stack_top[0] - stack_limit[0]) if stack_top and stack_limit else None
    if proc.returncode == EXIT_STACK_OVERFLOW or any("stack overflow" in ln for ln in board):
        raise UserError(f"{elf}: the firmware's stack overflowed its {stack_bytes}-byte reservation: raise "
                        f"__stack_size in boards/frk_sections.ld")
    if summary is None:
        fault = next((ln for ln in board if "fault" in ln), None)
        fatal = next((ln for ln in console if ln.startswith(("qemu: fatal", "qemu-system-arm:"))), None)
        what = fault or fatal or (console[-1] if console else "no output")
        hint = ": a firmware bug, or an image built for another core" if fault or fatal else ""
        raise UserError(f"{elf}: the firmware ended with exit code {proc.returncode} and no SUMMARY line "
                        f"(last output: {what}){hint}")
    stack = next((m for m in map(_STACK.match, board) if m), None)
    inputs, mismatches = int(summary.group(1)), int(summary.group(2))
    per_inference = total = invoke = layers = tail = None
    m = _COUNTS.search(counts)
    if count_instructions:
        if m is None:
            raise UserError(f"{elf}: the instruction-count plugin wrote no counts (QEMU exit code "
                            f"{proc.returncode}); run with count_instructions=False to skip counting")
        total, invoke, regions = (int(v) for v in m.groups())
        if regions != inputs or regions == 0:
            raise UserError(f"{elf}: the plugin saw {regions} inferences but the harness ran {inputs}: rebuild "
                            f"the firmware from an exported project")
        per_inference = invoke / regions
        layers, tail = _layer_counts(counts, regions)
    return TargetResult(
        target=t.name, inputs=inputs, mismatches=mismatches, returncode=proc.returncode, lines=lines,
        board_lines=board, binary=elf, text_bytes=fp.text, data_bytes=fp.data, bss_bytes=fp.bss,
        flash_bytes=fp.flash, ram_bytes=fp.ram, weight_bytes=fp.size_of(weight_arrays) if weight_arrays else None,
        test_data_bytes=fp.size_of(TEST_DATA_SYMBOLS), arena_bytes=fp.size_of([ARENA_SYMBOL]),
        scratch_bytes=fp.size_of([SCRATCH_SYMBOL]), stack_bytes=stack_bytes,
        stack_used_bytes=int(stack.group(1)) if stack else None,
        instructions_total=total, instructions_invoke=invoke, instructions_per_inference=per_inference,
        layer_instructions=layers, layer_tail_instructions=tail)


def _layer_counts(counts: str, regions: int) -> tuple[tuple[float, ...] | None, float | None]:
    """The plugin's per-layer line as means per inference: (per op, after the last op), or (None, None) when
    there is none (no layer marker in the ELF, or more marks than the plugin holds) or when the regions did not all
    mark the same number of layers (an inference that stopped early), so that the segment means would mix ops."""
    m = _LAYERS.search(counts)
    if m is None:
        return None, None
    sums = [int(v) for v in m.group(1).split(",") if v]
    if not sums or int(m.group(3)) != regions * len(sums):
        return None, None
    return tuple(v / regions for v in sums), int(m.group(2)) / regions


def run_project(project_dir, target: str | None = None, *, timeout: float | None = None,
                count_instructions: bool = True, build: bool = True, jobs: int | None = None) -> TargetResult:
    """Run an exported project's harness on `target` (default: the project's own, from project.json).

    build=True first runs build_project (make is incremental: a no-op when the build is up to date); with
    build=False a missing binary is a UserError. Cortex-M targets run under qemu-system-arm (see run_firmware);
    the host target runs natively and leaves the footprint and instruction fields None.
    timeout: seconds before the run is stopped; default 60 s + 10 s per test input.
    """
    project, t = _resolve(project_dir, target)
    _require_harness(project)
    if timeout is None:
        timeout = default_timeout(project)
    if build:
        binary = build_project(project, t.name, jobs=jobs)
    else:
        binary = project / t.binary
        if not binary.is_file():
            raise UserError(f"{project}: {t.binary} is missing: build it first (flexround-mcu build {project})")
    if not t.is_cortex_m:
        res = run_host(binary, timeout=timeout)
        return TargetResult(t.name, res.inputs, res.mismatches, res.returncode, res.lines, binary=binary)
    weights = _project_meta(project).get("weight_arrays") or ()
    return run_firmware(binary, t.name, timeout=timeout, count_instructions=count_instructions,
                        weight_arrays=tuple(weights))


def run_on_target(project_dir, target: str | None = None, *, timeout: float | None = None,
                  count_instructions: bool = True, jobs: int | None = None) -> TargetResult:
    """Build the project for `target` and run it there: what `flexround-mcu export --target T` needs."""
    return run_project(project_dir, target, timeout=timeout, count_instructions=count_instructions, build=True,
                       jobs=jobs)
