"""`station flash --port` names a port the scan does not list: a standalone simulator, a bridge, an unknown adapter."""

from __future__ import annotations

from pathlib import Path

from click.testing import CliRunner

from station.cli import main
from station.sim.esp_loader import SimulatedEsp
from station.sim.particle_serial import SimulatedSerialDevice
from station.sim.timing import TimingModel
from tests.station.discovery.images import esp_app, particle_image


def _flash(*args: str) -> tuple[int, str, str]:
    # No sources: nothing attached that a scan could find, as on a desk with only the named port.
    result = CliRunner().invoke(main, ["flash", *args], obj={"sources": []})
    return result.exit_code, result.stdout, result.stderr


def test_an_esp_image_onto_the_socket_url_of_station_sim_esp(tmp_path: Path) -> None:
    app = tmp_path / "app.bin"
    app.write_bytes(esp_app("esp32", size=30_000))
    with SimulatedEsp("esp32", "24:0a:c4:00:00:01", timing=TimingModel(enabled=False)) as sim:
        url = sim.serve_tcp()
        code, out, err = _flash(str(app), "--port", url)
        assert code == 0, err
        assert out.startswith(f"PASS {url} ESP32 240ac4000001")
        assert sim.read_flash(0x10000, app.stat().st_size) == app.read_bytes()


def test_a_module_onto_the_link_of_station_sim_particle_serial(tmp_path: Path) -> None:
    image = particle_image("photon")
    module = tmp_path / "app.bin"
    module.write_bytes(image.data)
    link = tmp_path / "ttyPARTICLE"
    with SimulatedSerialDevice("photon", timing=TimingModel(enabled=False), link=link) as sim:
        code, out, err = _flash(str(module), "--port", str(link))
        assert code == 0, err
        assert f"photon {sim.device_id}" in out
        assert sim.installed(5, 1) == image.data


def test_a_port_that_is_not_there_is_not_found(tmp_path: Path) -> None:
    module = tmp_path / "app.bin"
    module.write_bytes(particle_image("photon").data)
    code, _, err = _flash(str(module), "--port", str(tmp_path / "nothing"))
    assert code == 1
    assert "no device at port" in err
    code, _, err = _flash(str(module), "--port", "socket://127.0.0.1:1")  # a module over a URL: no family speaks it
    assert code == 1
