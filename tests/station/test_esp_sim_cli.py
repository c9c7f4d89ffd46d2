"""``station sim esp``: a simulated ESP that esptool reaches over TCP, stopped with Ctrl-C."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import pytest
from click.testing import CliRunner

from station.cli import main

STATION = Path(sys.executable).with_name("station")


@pytest.mark.parametrize(
    ("args", "message"),
    [
        (["--listen", "localhost"], "must be HOST:PORT"),
        (["--listen", "127.0.0.1:0", "--mac", "12:34"], "6 bytes"),
        (["--listen", "127.0.0.1:0", "--faults", "melt@3"], "unknown fault"),
    ],
)
def test_bad_options_are_usage_errors(args: list[str], message: str) -> None:
    result = CliRunner().invoke(main, ["sim", "esp", *args])
    assert result.exit_code == 2
    assert message in result.output


def test_unknown_chip_is_refused_by_click() -> None:
    result = CliRunner().invoke(main, ["sim", "esp", "--listen", "127.0.0.1:0", "--chip", "esp8266"])
    assert result.exit_code == 2


@pytest.mark.skipif(not STATION.exists(), reason="station console script not installed in this venv")
def test_serves_esptool_until_interrupted() -> None:
    sim = subprocess.Popen(
        [str(STATION), "sim", "esp", "--listen", "127.0.0.1:0", "--chip", "esp32s3", "--mac", "7c:df:a1:0a:0b:0c"],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        assert sim.stdout is not None
        banner = sim.stdout.readline()
        assert "ESP32-S3 MAC 7c:df:a1:0a:0b:0c listening on socket://127.0.0.1:" in banner
        url = banner.split(" listening on ")[1].split()[0]
        result = subprocess.run(
            [
                sys.executable,
                "-m",
                "esptool",
                "--port",
                url,
                "--before",
                "no-reset",
                "--connect-attempts",
                "1",
                "read-mac",
            ],
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )
        assert result.returncode == 0, result.stdout + result.stderr
        assert "7c:df:a1:0a:0b:0c" in result.stdout
    finally:
        sim.send_signal(signal.SIGINT)
        code = sim.wait(timeout=10)
    assert code == 0
