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


def corrupt_one_weight(project, dest):
    """Copy an exported C project (without build/) to dest with one weight changed: the first value of the
    classifier's filter, negated (or moved by 100 if it is small). Returns dest."""
    import re
    import shutil
    from pathlib import Path

    dest = Path(dest)
    shutil.copytree(project, dest, ignore=shutil.ignore_patterns("build"))
    text = (dest / "weights.c").read_text()
    m = re.search(r"const int8_t op14_fc_filter\[\d+\][^{]*\{\s*(-?\d+)", text)
    assert m, "op14_fc_filter not found in weights.c"
    v = int(m.group(1))
    new = -v if abs(v) >= 50 else (v + 100 if v < 0 else v - 100)
    (dest / "weights.c").write_text(text[:m.start(1)] + str(new) + text[m.end(1):])
    return dest
