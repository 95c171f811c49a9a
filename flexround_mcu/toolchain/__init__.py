"""Toolchains for exported C projects: the host build (gcc + make) now; Cortex-M targets later."""

from flexround_mcu.toolchain.host import HarnessResult, build_host, run_host

__all__ = ["HarnessResult", "build_host", "run_host"]
