"""Label printers by name: tcp://HOST[:PORT] (raw port 9100) and cups://QUEUE through `lp -d QUEUE -o raw`
(here a stand-in `lp` on PATH that records its arguments and input, as CUPS would receive them)."""

from __future__ import annotations

import os
import stat
from pathlib import Path

import pytest

from station.errors import InputError
from station.labels.printer import LabelConfig, LabelPrinterError, describe, send


def _fake_lp(folder: Path, *, fail: bool = False) -> None:
    script = folder / "lp"
    body = (
        'echo "lp: The printer or class does not exist." >&2; exit 1'
        if fail
        else f'printf "%s\\n" "$@" > "{folder}/args"; cat > "{folder}/data"'
    )
    script.write_text(f"#!/bin/sh\n{body}\n")
    script.chmod(script.stat().st_mode | stat.S_IXUSR)


def test_printer_names() -> None:
    assert describe("tcp://10.0.0.7") == ("tcp", "10.0.0.7", 9100)
    assert describe("tcp://zebra.local:6101") == ("tcp", "zebra.local", 6101)
    assert describe("cups://Zebra_ZD421") == ("cups", "Zebra_ZD421", 0)
    for bad in ("10.0.0.7", "http://x", "cups://", "tcp://:9100"):
        with pytest.raises(InputError):
            describe(bad)


def test_cups_gets_the_raw_zpl_through_lp(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_lp(tmp_path)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    send("cups://Zebra_ZD421", b"^XA^FDhi^FS^XZ")
    assert (tmp_path / "args").read_text().split() == ["-d", "Zebra_ZD421", "-o", "raw"]
    assert (tmp_path / "data").read_bytes() == b"^XA^FDhi^FS^XZ"


def test_a_refusing_queue_is_a_label_error_with_lps_reason(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_lp(tmp_path, fail=True)
    monkeypatch.setenv("PATH", f"{tmp_path}{os.pathsep}{os.environ['PATH']}")
    with pytest.raises(LabelPrinterError, match="does not exist"):
        send("cups://nope", b"^XA^XZ")


def test_label_section_is_checked(tmp_path: Path) -> None:
    where = "line.toml [label]"
    with pytest.raises(InputError, match="unknown key"):
        LabelConfig.from_mapping({"printer": "tcp://x", "colour": "red"}, where=where, base_dir=tmp_path)
    (tmp_path / "bad.zpl").write_text("^XA^FD{weight}^FS^XZ")
    with pytest.raises(InputError, match="unknown placeholder"):
        LabelConfig.from_mapping({"printer": "tcp://x", "template": "bad.zpl"}, where=where, base_dir=tmp_path)
    (tmp_path / "ok.zpl").write_text("^XA^FO5,5^FH_^FD{serial}^FS^FO5,40^BQN,2,3^FH_^FDQA,{qr}^FS^XZ")
    config = LabelConfig.from_mapping({"printer": "tcp://x", "template": "ok.zpl"}, where=where, base_dir=tmp_path)
    assert "{serial}" in config.template
