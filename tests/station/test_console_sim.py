"""The simulated console's rollout endpoints through the station's client over loopback HTTP: upload
with the version checked against the binary, listing, download, release only what runs, device
update (lock, unlock, flash, name, groups), groups, the firmware precedence and persistence."""

from __future__ import annotations

import re
from collections.abc import Iterator
from pathlib import Path

import httpx
import pytest

from station.cloud.client import ParticleCloud
from station.cloud.config import Timeouts
from station.cloud.errors import CloudAuthError, CloudNotFound, CloudRejected
from station.cloud.token import AccessToken
from station.demo.sample_release import particle_app
from station.sim.console import SimConsole, SimToken
from station.sim.console_http import ConsoleServer
from station.sim.console_rollout import MISMATCH, NOT_RUNNING, report_running_firmware, targeted_version
from station.sim.console_state import ConsoleState

TOKEN = "f" * 40
PRODUCT = "4242"
ARGON = 12
DEV_A, DEV_B, DEV_C = (f"{i:024x}" for i in (0xA1, 0xB2, 0xC3))


def app(version: int, *, product_id: int = 4242, platform: str = "argon", size: int = 2048) -> bytes:
    return particle_app(platform, size=size, product_id=product_id, product_version=version)


@pytest.fixture(name="served")
def served_fixture(tmp_path: Path) -> Iterator[tuple[SimConsole, ParticleCloud]]:
    console = SimConsole.with_product(4242, TOKEN, platform_id=ARGON, state_file=tmp_path / "console.json")
    server = ConsoleServer(console).start()
    client = ParticleCloud(
        AccessToken(TOKEN, source="test"), base_url=server.url, timeouts=Timeouts(connect=5, read=5, write=5, pool=5)
    )
    client.import_devices(PRODUCT, [DEV_A, DEV_B, DEV_C])
    try:
        yield console, client
    finally:
        client.close()
        server.stop()


def test_upload_checks_the_version_against_the_binary(served: tuple[SimConsole, ParticleCloud]) -> None:
    console, client = served
    with pytest.raises(CloudRejected) as info:
        client.upload_firmware(PRODUCT, version=4, title="v4", binary=app(3))
    expected = MISMATCH.format(given=4, compiled=3)
    assert expected == "Version 4 does not match the PRODUCT_VERSION (3) compiled into the binary."
    # The one line a user of the station sees: where, the status, the console's own words.
    assert str(info.value) == f"POST /v1/products/{PRODUCT}/firmware: HTTP 400 invalid_request: {expected}"
    assert info.value.status == 400
    assert console.state.firmware[4242] == {}

    uploaded = client.upload_firmware(PRODUCT, version=3, title="blinky v3", binary=app(3), description="first")
    assert (uploaded.version, uploaded.title, uploaded.size, uploaded.device_count) == (3, "blinky v3", len(app(3)), 0)
    assert uploaded.uploaded_by == "sim-user@example.com"
    assert client.download_firmware(PRODUCT, 3) == app(3)


@pytest.mark.parametrize(
    ("binary", "version", "says"),
    [
        (app(3, product_id=4243), 3, "compiled with PRODUCT_ID(4243), not this product (4242)"),
        (app(3, platform="photon"), 3, "platform 6; this product's platform is 12"),
        (particle_app("argon", size=1024), 3, "no PRODUCT_VERSION compiled in"),
        (b"\x00" * 64, 3, "not a Particle firmware module"),
    ],
)
def test_upload_refusals(served: tuple[SimConsole, ParticleCloud], binary: bytes, version: int, says: str) -> None:
    _, client = served
    with pytest.raises(CloudRejected, match=r"HTTP 400 invalid_request: .*" + re.escape(says)):
        client.upload_firmware(PRODUCT, version=version, title="t", binary=binary)


def test_duplicate_version_and_bad_forms(served: tuple[SimConsole, ParticleCloud]) -> None:
    _, client = served
    client.upload_firmware(PRODUCT, version=3, title="v3", binary=app(3))
    with pytest.raises(CloudRejected, match="Version 3 already exists"):
        client.upload_firmware(PRODUCT, version=3, title="v3 again", binary=app(3))
    url = f"http://{console_url(client)}/v1/products/{PRODUCT}/firmware"
    headers = {"Authorization": f"Bearer {TOKEN}"}
    # particle-api-js names the part "file": accepted as well.
    ok = httpx.post(url, headers=headers, data={"version": "4", "title": "v4"}, files={"file": ("f.bin", app(4))})
    assert ok.status_code == 200 and ok.json()["version"] == 4
    no_title = httpx.post(url, headers=headers, data={"version": "5"}, files={"binary": ("f.bin", app(5))})
    assert no_title.status_code == 400 and no_title.json()["error_description"] == "title is required."
    no_file = httpx.post(url, headers=headers, data={"version": "5", "title": "t"})
    assert no_file.status_code == 400 and "binary is required" in no_file.json()["error_description"]
    assert [f.version for f in client.list_firmware(PRODUCT)] == [3, 4]


def console_url(client: ParticleCloud) -> str:
    return client.base_url.removeprefix("http://")


def test_release_needs_a_device_running_it(served: tuple[SimConsole, ParticleCloud]) -> None:
    console, client = served
    client.upload_firmware(PRODUCT, version=3, title="v3", binary=app(3))
    with pytest.raises(CloudRejected) as info:
        client.release_firmware(PRODUCT, 3, product_default=True)
    assert NOT_RUNNING.format(version=3) in str(info.value)
    with pytest.raises(CloudNotFound):
        client.release_firmware(PRODUCT, 9)

    locked = client.lock_device(PRODUCT, DEV_A, 3, flash=True)
    assert locked is not None and locked.desired_firmware_version == 3 and locked.firmware_version is None
    assert console.product_device(PRODUCT, DEV_A).flash_requested  # type: ignore[union-attr]
    assert report_running_firmware(console, PRODUCT, DEV_A, app(3)) == 3
    device = client.get_device(PRODUCT, DEV_A)
    assert (device.firmware_version, device.online) == (3, True)
    assert not console.product_device(PRODUCT, DEV_A).flash_requested  # type: ignore[union-attr]

    client.release_firmware(PRODUCT, 3, product_default=True)
    listed = {f.version: f for f in client.list_firmware(PRODUCT)}
    assert listed[3].current and listed[3].released and listed[3].device_count == 1


def test_device_update_lock_unlock_name_groups(served: tuple[SimConsole, ParticleCloud]) -> None:
    _, client = served
    client.upload_firmware(PRODUCT, version=3, title="v3", binary=app(3))
    with pytest.raises(CloudRejected, match="Firmware version 7 does not exist"):
        client.lock_device(PRODUCT, DEV_B, 7)
    with pytest.raises(CloudNotFound, match="is not in product"):
        client.lock_device(PRODUCT, "0" * 24, 3)
    with pytest.raises(CloudRejected, match="do not exist in this product"):
        client.update_device(PRODUCT, DEV_B, groups=["pilot"])
    created = client.create_group(PRODUCT, "pilot", description="test devices")
    assert created.name == "pilot"
    with pytest.raises(CloudRejected, match="already exists"):
        client.create_group(PRODUCT, "pilot")
    with pytest.raises(CloudRejected, match="lowercase letters"):
        client.create_group(PRODUCT, "Pilot Run")
    updated = client.update_device(PRODUCT, DEV_B, groups=["pilot"], name="P046-0002")
    assert updated is not None and updated.groups == ("pilot",) and updated.name == "P046-0002"
    with pytest.raises(CloudRejected, match="name must be"):
        client.update_device(PRODUCT, DEV_B, name="no spaces please")
    assert client.lock_device(PRODUCT, DEV_B, 3, flash=False).desired_firmware_version == 3  # type: ignore[union-attr]
    assert client.unlock_device(PRODUCT, DEV_B).desired_firmware_version is None  # type: ignore[union-attr]
    groups = {g.name: g for g in client.list_groups(PRODUCT)}
    assert groups["pilot"].device_count == 1
    page = client.list_devices(PRODUCT, groups=["pilot"])
    assert [d.id for d in page.devices] == [DEV_B]


def test_release_to_groups_and_precedence(served: tuple[SimConsole, ParticleCloud]) -> None:
    console, client = served
    for v in (3, 4, 5):
        client.upload_firmware(PRODUCT, version=v, title=f"v{v}", binary=app(v))
    client.create_group(PRODUCT, "pilot")
    client.update_device(PRODUCT, DEV_B, groups=["pilot"])
    for device, v in ((DEV_A, 3), (DEV_B, 4), (DEV_C, 5)):
        report_running_firmware(console, PRODUCT, device, app(v))
    client.release_firmware(PRODUCT, 3, product_default=True)
    client.release_firmware(PRODUCT, 4, groups=["pilot"])
    with pytest.raises(CloudRejected, match="Unknown group"):
        client.release_firmware(PRODUCT, 4, groups=["nope"])
    state = console.state
    devices = state.devices[4242].by_id
    assert targeted_version(state, 4242, devices[DEV_A]) == 3  # product default
    assert targeted_version(state, 4242, devices[DEV_B]) == 4  # its group's release wins
    client.lock_device(PRODUCT, DEV_A, 5, flash=False)
    assert targeted_version(state, 4242, state.devices[4242].by_id[DEV_A]) == 5  # a lock wins
    # The handshake answers what the cloud targets the device with.
    assert console.device_handshake(PRODUCT, DEV_B, 4) == 4
    # A newer product default replaces the old one.
    client.release_firmware(PRODUCT, 5, product_default=True)
    current = [f.version for f in client.list_firmware(PRODUCT) if f.current]
    assert current == [5]


def test_scopes_and_unknown_product(served: tuple[SimConsole, ParticleCloud]) -> None:
    console, client = served
    console.add_token(SimToken("e" * 40, scopes=frozenset({"firmware:list"})))
    limited = ParticleCloud(AccessToken("e" * 40, source="test"), base_url=client.base_url)
    with limited:
        assert limited.list_firmware(PRODUCT) == ()
        with pytest.raises(CloudAuthError) as info:
            limited.upload_firmware(PRODUCT, version=3, title="t", binary=app(3))
        assert "needs the firmware:create scope" in str(info.value)
        with pytest.raises(CloudAuthError, match="devices:update"):
            limited.lock_device(PRODUCT, DEV_A, 3)
    with pytest.raises(CloudNotFound):
        client.list_firmware("9999")


def test_state_with_firmware_and_groups_survives_a_restart(served: tuple[SimConsole, ParticleCloud]) -> None:
    console, client = served
    client.upload_firmware(PRODUCT, version=3, title="v3", binary=app(3))
    client.create_group(PRODUCT, "pilot")
    client.update_device(PRODUCT, DEV_A, groups=["pilot"])
    report_running_firmware(console, PRODUCT, DEV_A, app(3))
    client.release_firmware(PRODUCT, 3, groups=["pilot"])
    assert console.state_file is not None
    again = ConsoleState.load(console.state_file)
    assert again.firmware[4242][3].data == app(3)
    assert again.firmware[4242][3].groups == ("pilot",)
    assert list(again.groups[4242]) == ["pilot"]
    device = again.devices[4242].by_id[DEV_A]
    assert (device.firmware_version, device.online, device.groups) == (3, True, ("pilot",))
    assert ConsoleState.from_json(again.to_json()).to_json() == again.to_json()


def test_a_device_reports_what_it_runs_through_the_simulators_own_route(
    served: tuple[SimConsole, ParticleCloud], tmp_path: Path
) -> None:
    """What a person trying the rollout against `station sim console` does in place of a real device."""
    _, client = served
    client.upload_firmware(PRODUCT, version=3, title="v3", binary=app(3))
    client.lock_device(PRODUCT, DEV_A, 3, flash=False)
    url = f"{client.base_url}/sim/products/{PRODUCT}/devices/{DEV_A.upper()}/handshake"
    auth = {"Authorization": f"Bearer {TOKEN}"}
    with httpx.Client(timeout=5) as http:
        assert http.post(url, json={"firmware_version": 3}).status_code == 401
        for bad in ({}, {"firmware_version": "three"}, {"firmware_version": 0}, {"firmware_version": 3, "online": 2}):
            answer = http.post(url, json=bad, headers=auth)
            assert answer.status_code == 400 and answer.json()["error"] == "invalid_request", bad
        assert (
            http.post(
                url.replace(DEV_A.upper(), DEV_B[:-1] + "f"), json={"firmware_version": 3}, headers=auth
            ).status_code
            == 404
        )
        answer = http.post(url, json={"firmware_version": 3}, headers=auth)
    assert answer.status_code == 200
    assert answer.json()["firmware_version"] == 3 and answer.json()["targeted_firmware_release_version"] == 3
    device = client.get_device(PRODUCT, DEV_A)
    assert (device.firmware_version, device.online) == (3, True)
    client.release_firmware(PRODUCT, 3, product_default=True)  # the rule is met: a device runs it
    assert ConsoleState.load(tmp_path / "console.json").devices[4242].by_id[DEV_A].firmware_version == 3
