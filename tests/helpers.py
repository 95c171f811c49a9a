"""Small assertions shared by the test files."""
from __future__ import annotations

import pytest

from flexround_mcu.cli import main
from flexround_mcu.errors import UserError


def user_error(fn, *args, **kw) -> str:
    """Run fn, expect a UserError, return its message (which must be one line)."""
    with pytest.raises(UserError) as e:
        fn(*args, **kw)
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def cli_fails_cleanly(capsys, *argv) -> str:
    """Run the CLI; assert exit code 2 and a single 'error: ...' line on stderr, no traceback; return the line."""
    code = main(list(argv))
    _, err = capsys.readouterr()
    assert code == 2, err
    lines = err.strip().splitlines()
    assert len(lines) == 1 and lines[0].startswith("error: ") and "Traceback" not in err, err
    return lines[0]
