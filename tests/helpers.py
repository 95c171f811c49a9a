"""Small assertions shared by the test files."""
from __future__ import annotations

import http.server
import threading

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


def corrupt_one_weight(project, dest, array: str = "op14_fc_filter"):
    """Copy an exported C project (without build/) to dest with one weight of filter `array` changed (default: the
    ResNet-8 classifier's). An int8 filter's first value is negated (or moved by 100 if it is small); a packed int4
    filter (uint8_t) gets the low nibble of its first byte, its first weight w, replaced by -8 if w >= 0, else 7
    (a change of 8 or more). Returns dest."""
    import re
    import shutil
    from pathlib import Path

    dest = Path(dest)
    shutil.copytree(project, dest, ignore=shutil.ignore_patterns("build"))
    text = (dest / "weights.c").read_text()
    m = re.search(rf"const (int8_t|uint8_t) {re.escape(array)}\[\d+\][^{{]*\{{\s*(-?\d+)", text)
    assert m, f"{array} not found in weights.c"
    v = int(m.group(2))
    if m.group(1) == "int8_t":
        new = -v if abs(v) >= 50 else (v + 100 if v < 0 else v - 100)
    else:
        low = ((v & 0x0F) ^ 8) - 8
        new = (v & 0xF0) | ((-8 if low >= 0 else 7) & 0x0F)
    (dest / "weights.c").write_text(text[:m.start(2)] + str(new) + text[m.end(2):])
    return dest


class LocalHTTPServer:
    """A local HTTP server (127.0.0.1, any free port, own thread): path -> body, counting the requests; `cut`
    sends only the first bytes of a body while announcing all of them."""

    def __init__(self):
        self.files: dict[str, bytes] = {}
        self.cut: dict[str, int] = {}
        self.hits = 0
        files, cut, server = self.files, self.cut, self

        class Handler(http.server.BaseHTTPRequestHandler):
            def do_GET(self):
                server.hits += 1
                body = files.get(self.path)
                if body is None:
                    self.send_error(404)
                    return
                self.send_response(200)
                self.send_header("Content-Type", "application/octet-stream")
                self.send_header("Content-Length", str(len(body)))
                self.end_headers()
                self.wfile.write(body[:cut.get(self.path, len(body))])

            def log_message(self, *args):
                pass

        self.httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)
        self.thread.start()

    def url(self, path: str) -> str:
        return f"http://127.0.0.1:{self.httpd.server_address[1]}{path}"

    def close(self):
        self.httpd.shutdown()
        self.httpd.server_close()
        self.thread.join(timeout=5)
