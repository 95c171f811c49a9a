#!/usr/bin/env python3
"""benchmarks/pareto.py for ds_cnn: accuracy against weight bytes (see pareto.py for the options).

    FLEXROUND_MCU_DATA=../shared/data .venv/bin/python benchmarks/pareto_ds_cnn.py [--jobs 2]
"""
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))

from _common import run  # noqa: E402
from pareto import main  # noqa: E402

if __name__ == "__main__":
    run(lambda: main(sys.argv[1:], model="ds_cnn"))
