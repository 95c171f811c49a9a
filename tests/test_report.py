"""`flexround-mcu report DIR`: an export's tables printed again from its report.json, and its bad input."""
from __future__ import annotations

import json
from pathlib import Path

from flexround_mcu.cli import main
from helpers import cli_fails_cleanly


def _export(out: Path, capsys) -> str:
    code = main(["export", "resnet8", "--target", "host", "--method", "rtn", "--wbits", "2", "--calib-size", "16",
                 "--eval-size", "32", "--test-inputs", "4", "--out", str(out)])
    captured = capsys.readouterr()
    assert code == 0, captured.err
    return captured.out


def test_report_prints_the_export_summary_again(shared_data, capsys, tmp_path):
    out = tmp_path / "w2"
    printed = _export(out, capsys)
    assert main(["report", str(out)]) == 0
    shown = capsys.readouterr().out
    summary = printed.strip().splitlines()
    # the summary the export printed, line for line (the export's own `written to` is the same folder)
    assert shown.splitlines()[:len(summary)] == summary
    report = json.loads((out / "report.json").read_text())
    table = shown.splitlines()[len(summary):]
    rows = {line.split()[-1]: line.split() for line in table if line.strip() and line.split()[0].isdigit()}
    assert rows["s3_conv2"][3] == "2" and rows["fc"][3] == "8" and rows["conv0"][3] == "8"
    # the per-layer bytes add up to the weight bytes report.json counts
    assert f"{report['memory']['weight_bytes']:,}" in table[-1].split()
    assert main(["report", str(out), "--json"]) == 0
    assert json.loads(capsys.readouterr().out) == report


def test_report_bad_folders(capsys, tmp_path):
    assert "no such folder" in cli_fails_cleanly(capsys, "report", str(tmp_path / "missing"))
    assert "has no report.json: it is not an export folder" in cli_fails_cleanly(capsys, "report", str(tmp_path))
    (tmp_path / "report.json").write_text("{not json")
    assert "is not readable JSON" in cli_fails_cleanly(capsys, "report", str(tmp_path))
    (tmp_path / "report.json").write_text(json.dumps({"model": "resnet8"}))
    line = cli_fails_cleanly(capsys, "report", str(tmp_path))
    assert "lacks target, method" in line and "re-run the export" in line
