"""Unit labels: 8 simulated PASS boards print to a fake Zebra on a loopback port (raw ZPL recorded and
parsed back), the PNG preview's QR code decodes with a real reader (zbarimg) to the same payload, and
with the printer stopped the boards still PASS and `station label reprint --failed` prints later."""

from __future__ import annotations

import contextlib
import json
import re
import shutil
import socket
import subprocess
import threading
from pathlib import Path

import pytest
from click.testing import CliRunner

from station.cli import main
from station.labels.model import UnitLabel, parse_payload
from station.labels.preview import render_png
from station.labels.zpl import escape_field, render_zpl, unescape_field
from station.store import Registry
from tests.station.trace.conftest import events, profile, release

ZBARIMG = shutil.which("zbarimg")
needs_zbar = pytest.mark.skipif(
    ZBARIMG is None, reason="zbarimg (Debian zbar-tools) not installed; `make test` installs it"
)


class FakePrinter:
    """A Zebra's raw port: accepts connections on loopback and records what each one sent."""

    def __init__(self, port: int = 0) -> None:
        self.sock = socket.socket()
        self.sock.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        self.sock.bind(("127.0.0.1", port))
        self.sock.listen(16)
        self.port = self.sock.getsockname()[1]
        self.jobs: list[bytes] = []
        self._thread = threading.Thread(target=self._serve, daemon=True)
        self._thread.start()

    def _serve(self) -> None:
        while True:
            try:
                conn, _ = self.sock.accept()
            except OSError:
                return
            with conn:
                data = b""
                while chunk := conn.recv(65536):
                    data += chunk
                self.jobs.append(data)

    def close(self) -> None:
        # shutdown() wakes the thread blocked in accept(); close() alone leaves the port listening.
        with contextlib.suppress(OSError):
            self.sock.shutdown(socket.SHUT_RDWR)
        self.sock.close()
        self._thread.join(5)


def parse_zpl(job: bytes) -> tuple[list[str], list[str]]:
    """(text field data, QR field data) of one label, unescaped as ^FH_ makes the printer do."""
    text = job.decode("ascii")
    assert text.lstrip().startswith("^XA") and text.rstrip().endswith("^XZ")
    texts, codes = [], []
    for field in re.finditer(r"(\^BQ[^\^]*)?\^FH_\^FD(.*?)\^FS", text):
        value = unescape_field(field.group(2))
        if field.group(1):
            assert value.startswith("QA,")
            codes.append(value[3:])
        else:
            texts.append(value)
    return texts, codes


def decode_qr(png: Path) -> str:
    assert ZBARIMG is not None
    done = subprocess.run([ZBARIMG, "--raw", "-q", str(png)], capture_output=True, text=True, check=True)
    return done.stdout.rstrip("\n")


def test_field_data_cannot_become_zpl_commands() -> None:
    hostile = "Acme ^XZ^XA~JR_ünï"
    escaped = escape_field(hostile)
    assert "^" not in escaped and "~" not in escaped and escaped.isascii()
    assert unescape_field(escaped) == hostile
    label = UnitLabel("e00fce68aaaaaaaaaaaaaaaa", "SN-1", hostile, "7", "2026-12-04", "line-1")
    texts, codes = parse_zpl(render_zpl(label))
    assert hostile in texts and parse_payload(codes[0])["PRD"] == hostile


@needs_zbar
def test_the_png_preview_qr_decodes_to_the_payload(tmp_path: Path) -> None:
    label = UnitLabel("e00fce68aaaaaaaaaaaaaaaa", "P046AK8AAA000123", "acme (1234)", "7", "2026-12-04", "line-1")
    png = tmp_path / "label.png"
    png.write_bytes(render_png(label))
    assert decode_qr(png) == label.payload()


def _label_profile(tmp_path: Path, port: int) -> Path:
    return profile(
        tmp_path,
        release(tmp_path, 7),
        extra=f'[label]\nprinter = "tcp://127.0.0.1:{port}"\ntimeout = 2\npreview_dir = "previews"\n',
    )


def _run(p: Path, db: Path, boards: int = 8) -> list[dict[str, object]]:
    result = CliRunner().invoke(
        main,
        ["run", "--profile", str(p), "--db", str(db), "--operator", "ana", "--json", "--no-timing",
         "--simulate", f"argon-dfu:{boards}", "--duration", "1.5"],
        catch_exceptions=False,
    )  # fmt: skip
    assert result.exit_code == 0, result.output
    return events(result.output)


@needs_zbar
def test_labels_for_8_passed_boards_reach_the_printer_and_decode_to_each_unit(tmp_path: Path) -> None:
    printer = FakePrinter()
    try:
        db = tmp_path / "station.db"
        seen = _run(_label_profile(tmp_path, printer.port), db)
        passed = {str(e["device_id"]) for e in seen if e["event"] == "passed"}
        assert len(passed) == 8
        labels = [e for e in seen if e["event"] == "label"]
        assert {str(e["device_id"]) for e in labels} == passed and all(e["ok"] for e in labels)
    finally:
        printer.close()
    assert len(printer.jobs) == 8
    by_device = {}
    for job in printer.jobs:
        texts, codes = parse_zpl(job)
        assert len(codes) == 1
        fields = parse_payload(codes[0])
        by_device[fields["DEV"]] = (texts, fields, codes[0])
    assert set(by_device) == passed
    for device, (texts, fields, payload) in by_device.items():
        assert fields["PRD"] == "acme-blinky (1234)" and fields["FW"] == "7" and fields["STN"] == "line-1"
        assert re.fullmatch(r"\d{4}-\d{2}-\d{2}", fields["DATE"])
        assert device in texts and "FW 7" in texts and "line-1" in texts and "acme-blinky (1234)" in texts
        # The PNG preview of the same label carries the same payload, read back by a real QR reader.
        assert decode_qr(tmp_path / "previews" / f"{device}.png") == payload
    preview = CliRunner().invoke(main, ["label", "preview", device, "--db", str(db), "-o", str(tmp_path / "p.png")])
    assert preview.exit_code == 0 and decode_qr(tmp_path / "p.png") == payload


def test_printer_offline_fails_the_label_not_the_board_and_reprint_prints_later(tmp_path: Path) -> None:
    stopped = FakePrinter()
    port = stopped.port
    stopped.close()  # nothing listens there now
    db = tmp_path / "station.db"
    p = _label_profile(tmp_path, port)
    seen = _run(p, db, boards=3)
    passed = {str(e["device_id"]) for e in seen if e["event"] == "passed"}
    assert len(passed) == 3 and not [e for e in seen if e["event"] == "failed"]
    labels = [e for e in seen if e["event"] == "label"]
    assert len(labels) == 3 and not any(e["ok"] for e in labels)
    assert all("not reachable" in str(e["message"]) for e in labels)

    again = CliRunner().invoke(main, ["label", "reprint", "--failed", "--profile", str(p), "--db", str(db)])
    assert again.exit_code == 1 and again.output.count("NOT printed") == 3  # still offline: still queued

    printer = FakePrinter(port)  # the printer is back
    try:
        result = CliRunner().invoke(main, ["label", "reprint", "--failed", "--profile", str(p), "--db", str(db)])
        assert result.exit_code == 0, result.output
        assert result.output.count(": printed") == 3
    finally:
        printer.close()
    assert {parse_payload(parse_zpl(job)[1][0])["DEV"] for job in printer.jobs} == passed
    nothing = CliRunner().invoke(main, ["label", "reprint", "--failed", "--profile", str(p), "--db", str(db)])
    assert nothing.exit_code == 0 and "no labels waiting" in nothing.output
    one = CliRunner().invoke(
        main, ["label", "reprint", sorted(passed)[0], "--profile", str(p), "--db", str(db)]
    )  # a single device's label again, on request: the printer is gone again, so it fails and says so
    assert one.exit_code == 1
    with Registry(db, create=False) as registry:
        assert registry.history() and all(a.result.value == "pass" for a in registry.history())
        reprints = registry.audit.entries(action="label-reprint")
        assert len(reprints) == 7
    assert json.dumps(seen)  # events are plain JSON


def test_a_bad_label_section_stops_the_run_before_any_board(tmp_path: Path) -> None:
    p = profile(tmp_path, release(tmp_path, 7), extra='[label]\nprinter = "lpt1"\n')
    result = CliRunner().invoke(
        main, ["run", "--profile", str(p), "--db", str(tmp_path / "s.db"), "--json", "--simulate", "argon-dfu:1"]
    )
    assert result.exit_code == 2
    assert "[label]: printer 'lpt1' is neither tcp://HOST[:PORT] nor cups://QUEUE" in result.output
    assert not events(result.output)
