"""What the benchmarks share: the results file and the command-line entry (a bad input is one line, exit code 2)."""
from __future__ import annotations

import json
import sys
from pathlib import Path
from typing import Callable

from flexround_mcu.errors import UserError


def write_results(path: Path, data: dict) -> None:
    """The benchmark's figures as JSON at `path` (folders made as needed)."""
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(data, indent=2) + "\n")
    print(f"written to {path}")


def run(main: Callable[[], int]) -> None:
    """Exit with main()'s code; a UserError is one line on stderr and exit code 2, no traceback."""
    try:
        sys.exit(main())
    except UserError as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
