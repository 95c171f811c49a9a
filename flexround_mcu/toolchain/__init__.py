"""Toolchains for exported C projects: the host build (gcc + make) and the Cortex-M targets (arm-none-eabi-gcc,
run under qemu-system-arm). The targets are one table in targets.py."""

from flexround_mcu.toolchain.host import HarnessResult, build_host, run_host
from flexround_mcu.toolchain.qemu import (Footprint, TargetResult, build_project, check_toolchain, footprint,
                                          project_target, run_firmware, run_on_target, run_project)
from flexround_mcu.toolchain.targets import CORTEX_M, TARGETS, Target, get_target

__all__ = ["HarnessResult", "build_host", "run_host", "Footprint", "TargetResult", "build_project",
           "check_toolchain", "footprint", "project_target", "run_firmware", "run_on_target", "run_project",
           "CORTEX_M", "TARGETS", "Target", "get_target"]
