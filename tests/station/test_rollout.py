"""The rollout library: what is uploaded (read from the bundle's binary), the product checks for
Device OS < 4 and >= 4 binaries, the retry policy, and an upload whose answer was lost."""

from __future__ import annotations

import dataclasses
from collections.abc import Iterator
from pathlib import Path

import pytest

from firmware_tools.bundle import open_verified_bundle
from station.cloud.backoff import Backoff
from station.cloud.client import ParticleCloud
from station.cloud.config import Timeouts
from station.cloud.errors import CloudRateLimited, CloudUnavailable
from station.cloud.models import ProductInfo
from station.cloud.rollout import (
    FirmwareToUpload,
    Retry,
    RolloutRefused,
    check_product,
    firmware_from_bundle,
    upload_firmware,
)
from station.cloud.token import AccessToken
from station.demo.sample_release import make_sample_release
from station.errors import InputError
from station.sim.console import SimConsole
from station.sim.console_http import ConsoleServer
from station.sim.faults import FaultKind
from tests.station.test_cloud_fixtures import FakeClock

TOKEN = "7" * 40


@pytest.fixture(name="bundle_fw", scope="module")
def bundle_fw_fixture(tmp_path_factory: pytest.TempPathFactory) -> FirmwareToUpload:
    folder = tmp_path_factory.mktemp("release")
    release = make_sample_release(folder, product_id=4242, product_version=7, app_size=3000)
    return firmware_from_bundle(open_verified_bundle(release.bundle, [release.public_key]))


def test_the_version_and_product_come_from_the_binary(bundle_fw: FirmwareToUpload) -> None:
    fw = bundle_fw
    assert (fw.version, fw.platform_id, fw.product_field, fw.product_id_field) == (7, 12, "product-id", 4242)
    assert fw.title == "acme-blinky v7" and fw.description == "sample"
    assert fw.image_name == "acme-blinky.bin"


def test_an_esp_bundle_is_not_product_firmware(tmp_path: Path) -> None:
    release = make_sample_release(tmp_path, target="esp32", product_id=4242, product_version=2)
    with pytest.raises(InputError, match="no Particle application \\(user part\\) to upload \\(images: esp-app\\)"):
        firmware_from_bundle(open_verified_bundle(release.bundle, [release.public_key]))


def test_product_checks(bundle_fw: FirmwareToUpload) -> None:
    assert check_product(bundle_fw, ProductInfo(4242, platform_id=12)) == []
    with pytest.raises(RolloutRefused, match=r"compiled with PRODUCT_ID\(4242\), not for product 99"):
        check_product(bundle_fw, ProductInfo(99))
    # Device OS >= 4: the field holds the platform ID; only the platform can be checked.
    os4 = dataclasses.replace(bundle_fw, product_field="platform-id", product_id_field=12)
    assert check_product(os4, ProductInfo(4242, platform_id=12)) == []
    notes = check_product(os4, ProductInfo(5150, platform_id=12))
    assert notes and "released for product 4242" in notes[0]
    with pytest.raises(RolloutRefused, match="is for platform 12; product 5150 is for platform 32"):
        check_product(os4, ProductInfo(5150, platform_id=32))


def test_retry_backs_off_and_gives_up() -> None:
    clock = FakeClock()
    retry = Retry(Backoff(base=1.0, cap=8.0), max_failures=3, sleep=clock.sleep, random=lambda: 0.0)
    calls: list[int] = []

    def flaky() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise CloudRateLimited("HTTP 429", retry_after=5.0)
        return "ok"

    assert retry(flaky) == "ok"
    assert clock.sleeps == [5.0, 5.0]
    calls.clear()

    def down() -> str:
        raise CloudUnavailable("HTTP 503")

    with pytest.raises(CloudUnavailable):
        retry(down)


@pytest.fixture(name="served")
def served_fixture() -> Iterator[tuple[SimConsole, ParticleCloud]]:
    console = SimConsole.with_product(4242, TOKEN, platform_id=12)
    server = ConsoleServer(console).start()
    client = ParticleCloud(
        AccessToken(TOKEN, source="test"), base_url=server.url, timeouts=Timeouts(connect=5, read=5, write=5, pool=5)
    )
    try:
        yield console, client
    finally:
        client.close()
        server.stop()


def test_an_upload_whose_answer_was_lost_is_not_sent_twice(
    bundle_fw: FirmwareToUpload, served: tuple[SimConsole, ParticleCloud]
) -> None:
    console, client = served
    # Requests: 1 product, 2 firmware list, 3 the upload: the console stores it, then drops the line.
    console.inject(FaultKind.DISCONNECT, at=3)
    clock = FakeClock()
    outcome = upload_firmware(client, "4242", bundle_fw, Retry(Backoff(), sleep=clock.sleep, random=lambda: 0.0))
    assert outcome.uploaded is True
    assert list(console.state.firmware[4242]) == [7]
    assert len(clock.sleeps) == 1
    assert 400 not in console.stats().by_status  # never refused as "already exists"
