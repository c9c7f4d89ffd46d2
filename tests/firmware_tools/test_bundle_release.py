"""build_release: stamping, checking, ordering and signing, for Particle modules and ESP images."""

from __future__ import annotations

import dataclasses
import json
from pathlib import Path

import pytest
from hypothesis import HealthCheck, assume, given, settings
from hypothesis import strategies as st

from firmware_tools import keys
from firmware_tools.bundle import (
    Family,
    ImageKind,
    Release,
    ReleaseInput,
    ReleaseRefused,
    build_release,
    open_verified_bundle,
    verify_stream,
    write_bundle,
)
from firmware_tools.bundle.partition_table import Partition, build_partition_table
from firmware_tools.errors import CheckFailed, UnsupportedError
from firmware_tools.esp import build_app_image
from firmware_tools.particle import Dependency, ModuleFunction, pack_module, parse_module
from tests.conftest import fixture_dir
from tests.firmware_tools.test_bundle_support import (
    ARGON,
    WHEN,
    argon_bootloader,
    argon_system_part,
    argon_user_part,
    esp_inputs,
    esp_release,
    fixed_clock,
    particle_release,
)


@pytest.fixture(scope="module")
def key() -> keys.SigningKey:
    return keys.generate_key()


def _release(key: keys.SigningKey, inputs: list[ReleaseInput], **kwargs: object) -> Release:
    args: dict[str, object] = {"product_id": 1234, "product_version": 7, "key": key, "product_name": "Acme"}
    args.update(kwargs)
    return build_release(inputs, clock=fixed_clock, **args)  # type: ignore[arg-type]


def test_particle_release_is_stamped_ordered_signed_and_verifies(key: keys.SigningKey) -> None:
    release = particle_release(key)
    m = release.manifest
    assert [e.name for e in m.images] == ["bootloader.bin", "system-part1.bin", "tinker.bin"]
    assert [e.kind for e in m.images] == [ImageKind.BOOTLOADER, ImageKind.SYSTEM_PART, ImageKind.USER_PART]
    assert [r.stamped for r in release.images] == [False, False, True]
    assert m.target.family is Family.PARTICLE and m.target.platform_id == ARGON
    assert m.target.platform_name == "argon"
    assert m.created_at == WHEN and m.signer_key_id == key.key_id
    user = parse_module(release.images[2].data)
    assert (user.suffix.product_id, user.suffix.product_version) == (1234, 7) and user.crc_ok and user.sha_ok
    assert m.images[2].particle is not None and m.images[2].particle.product_version == 7
    assert m.images[2].address == user.prefix.start_address
    assert key.public.verify(release.signature, release.manifest_bytes)
    assert verify_stream(release.bundle, [key.public]).ok


def test_release_is_deterministic_for_the_same_clock(key: keys.SigningKey) -> None:
    # Ed25519 signatures are deterministic, so the whole bundle is too.
    assert particle_release(key).bundle == particle_release(key).bundle


def test_user_part_already_stamped_with_the_same_values_is_kept(key: keys.SigningKey) -> None:
    user = argon_user_part(product_id=1234, product_version=7)
    release = _release(key, [ReleaseInput("app.bin", user)])
    assert release.images[0].data == user and not release.images[0].stamped


@pytest.mark.parametrize(
    ("product_id", "product_version", "failed"),
    [(94, 7, "product-id"), (1234, 3, "product-version"), (94, 3, "product-id")],
)
def test_user_part_stamped_with_other_values_is_refused(
    key: keys.SigningKey, product_id: int, product_version: int, failed: str
) -> None:
    user = argon_user_part(product_id=product_id, product_version=product_version)
    with pytest.raises(ReleaseRefused, match=failed) as info:
        _release(key, [ReleaseInput("app.bin", user)])
    assert info.value.exit_code == 1
    assert ("app.bin", failed) in [(n, c.name) for n, c in info.value.failures]


def test_device_os_4_app_with_platform_id_in_the_product_field_is_accepted(key: keys.SigningKey) -> None:
    user = pack_module(
        b"U" * 500,
        platform_id=ARGON,
        function=ModuleFunction.USER_PART,
        index=2,
        dependencies=[Dependency(ModuleFunction.SYSTEM_PART, 1, 6200)],
        product_id=ARGON,
        product_version=7,
    )
    release = _release(key, [ReleaseInput("app.bin", user)])
    assert not release.images[0].stamped
    assert release.images[0].data == user
    with pytest.raises(ReleaseRefused, match="product-version"):
        _release(key, [ReleaseInput("app.bin", user)], product_version=8)


def test_app_without_product_fields_is_refused(key: keys.SigningKey) -> None:
    user = argon_user_part(product_id=None, product_version=None)
    with pytest.raises(ReleaseRefused, match="no product id / version fields"):
        _release(key, [ReleaseInput("app.bin", user)])


def test_a_corrupt_module_refuses_the_whole_release(key: keys.SigningKey) -> None:
    bad = bytearray(argon_system_part())
    bad[100] ^= 0xFF
    with pytest.raises(ReleaseRefused, match="crc32") as info:
        _release(key, [ReleaseInput("sys.bin", bytes(bad)), ReleaseInput("boot.bin", argon_bootloader())])
    assert {n for n, _ in info.value.failures} == {"sys.bin"}


def test_modules_for_different_platforms_are_refused(key: keys.SigningKey) -> None:
    boron_user = pack_module(b"x" * 100, platform_id=13, function=ModuleFunction.USER_PART, index=2)
    with pytest.raises(UnsupportedError, match="different platforms"):
        _release(key, [ReleaseInput("a.bin", argon_user_part()), ReleaseInput("b.bin", boron_user)])


def test_the_same_module_twice_is_refused(key: keys.SigningKey) -> None:
    with pytest.raises(ReleaseRefused, match="unique"):
        _release(
            key,
            [ReleaseInput("boot1.bin", argon_bootloader(1101)), ReleaseInput("boot2.bin", argon_bootloader(1200))],
        )


def test_modules_that_are_not_flashed_from_a_bundle_are_refused(key: keys.SigningKey) -> None:
    asset = pack_module(b"asset data", platform_id=ARGON, function=ModuleFunction.ASSET, index=0, asset_name="cat.txt")
    with pytest.raises(ReleaseRefused, match="not flashed from a bundle"):
        _release(key, [ReleaseInput("cat.bin", asset)])


def test_families_cannot_be_mixed(key: keys.SigningKey) -> None:
    with pytest.raises(UnsupportedError, match="cannot be mixed"):
        _release(key, [ReleaseInput("a.bin", argon_user_part()), esp_inputs()[0]])


@pytest.mark.parametrize("name", ["../x.bin", "a/b.bin", ".hidden", "manifest.json", "with space.bin"])
def test_image_names_must_be_plain(key: keys.SigningKey, name: str) -> None:
    with pytest.raises(UnsupportedError, match="rename"):
        _release(key, [ReleaseInput(name, argon_user_part())])


def test_image_names_must_be_unique(key: keys.SigningKey) -> None:
    with pytest.raises(UnsupportedError, match="two images"):
        _release(key, [ReleaseInput("a.bin", argon_user_part()), ReleaseInput("A.bin", argon_bootloader())])


def test_no_images_is_refused(key: keys.SigningKey) -> None:
    with pytest.raises(UnsupportedError, match="at least one"):
        _release(key, [])


def test_esp_release_orders_by_address_and_records_chip_and_version(key: keys.SigningKey) -> None:
    release = esp_release(key)
    m = release.manifest
    assert m.target.family is Family.ESP and m.target.chip == "esp32"
    assert [(e.name, e.address) for e in m.images] == [
        ("partitions.bin", 0x8000),
        ("app.bin", 0x10000),
        ("ota1.bin", 0x110000),
    ]
    for e in m.images[1:]:
        assert e.kind is ImageKind.ESP_APP
        assert e.esp is not None and e.esp.app_version == "2.0.0" and e.esp.chip_id == 0
    assert verify_stream(release.bundle, [key.public]).ok


def test_esp_images_for_different_chips_are_refused(key: keys.SigningKey) -> None:
    inputs = [esp_inputs("esp32")[1], esp_inputs("esp32c3")[0]]
    with pytest.raises(ReleaseRefused, match=r"ota1\.bin: chip: image is for ESP32-C3"):
        _release(key, inputs)


def test_esp_images_must_not_overlap_or_straddle_sectors(key: keys.SigningKey) -> None:
    app = build_app_image(chip="esp32", payload_size=1024)
    with pytest.raises(ReleaseRefused, match="overlap"):
        _release(key, [ReleaseInput("a.bin", app, 0x10000), ReleaseInput("b.bin", app, 0x10000 + len(app) - 16)])
    with pytest.raises(ReleaseRefused, match="4 KiB"):
        _release(key, [ReleaseInput("a.bin", app, 0x10010)])


def test_write_bundle_and_open_it_as_the_station_does(key: keys.SigningKey, tmp_path: Path) -> None:
    release = particle_release(key, notes="first factory run")
    out = tmp_path / "acme.fwpkg"
    write_bundle(out, release)
    bundle = open_verified_bundle(out, [key.public])
    assert bundle.manifest == release.manifest
    assert bundle.manifest.notes == "first factory run"
    assert bundle.signer == key.public
    assert [i.name for i in bundle.images] == ["bootloader.bin", "system-part1.bin", "tinker.bin"]
    assert [i.data for i in bundle.images] == [r.data for r in release.images]
    user = bundle.images[2]
    assert user.particle is not None and user.particle.product_id == 1234
    assert user.address == parse_module(user.data).prefix.start_address
    assert json.loads(bundle.manifest_bytes)["product"]["name"] == "Acme Sensor"
    # The station may also name its trusted key by path.
    pub = tmp_path / "k.pub"
    pub.write_bytes(key.public.pem())
    assert open_verified_bundle(out, [pub]).manifest == release.manifest


def test_open_verified_bundle_raises_check_failed_naming_the_failure(key: keys.SigningKey, tmp_path: Path) -> None:
    out = tmp_path / "acme.fwpkg"
    write_bundle(out, particle_release(key))
    with pytest.raises(CheckFailed, match="signature") as info:
        open_verified_bundle(out, [keys.generate_key().public])
    assert info.value.exit_code == 1


def test_ecdsa_keys_sign_releases_too() -> None:
    key = keys.generate_key(keys.KeyAlgorithm.ECDSA_P256)
    release = particle_release(key)
    result = verify_stream(release.bundle, [key.public])
    assert result.ok and result.signer == key.public


def test_product_values_that_cannot_be_encoded_are_refused(key: keys.SigningKey) -> None:
    with pytest.raises(UnsupportedError, match="means 'no product'"):
        _release(key, [ReleaseInput("app.bin", argon_user_part())], product_id=0xFFFF, product_version=0xFFFF)
    with pytest.raises(UnsupportedError):
        _release(key, [ReleaseInput("app.bin", argon_user_part())], product_id=70000)
    with pytest.raises(UnsupportedError, match="control characters"):
        _release(key, [ReleaseInput("app.bin", argon_user_part())], notes="\x1b[31mred")


# --- the real corpus ---------------------------------------------------------------------------------


def test_release_from_real_argon_device_os_binaries(key: keys.SigningKey) -> None:
    folder = fixture_dir("particle")
    names = ["argon-bootloader-620.bin", "argon-softdevice-6.1.1.bin", "argon-tinker-620.bin"]
    if not all((folder / n).exists() for n in names):
        pytest.skip("argon fixtures not in the corpus")
    inputs = [ReleaseInput(n, (folder / n).read_bytes()) for n in reversed(names)]
    release = _release(key, inputs, product_version=3)
    m = release.manifest
    assert [e.kind for e in m.images] == [ImageKind.BOOTLOADER, ImageKind.RADIO_STACK, ImageKind.USER_PART]
    result = verify_stream(release.bundle, [key.public])
    assert result.ok, result.failed
    app = parse_module(result.images[2].data)
    assert (app.suffix.product_id, app.suffix.product_version) == (1234, 3)


def test_release_from_real_esp32_bootloader_and_app(key: keys.SigningKey) -> None:
    folder = fixture_dir("esp")
    boot, app = folder / "bootloader_esp32.bin", folder / "helloworld-esp32.bin"
    if not (boot.exists() and app.exists()):
        pytest.skip("esp32 fixtures not in the corpus")
    inputs = [ReleaseInput(app.name, app.read_bytes(), 0x10000), ReleaseInput(boot.name, boot.read_bytes(), 0x1000)]
    release = _release(key, inputs)
    m = release.manifest
    assert [(e.kind, e.address) for e in m.images] == [(ImageKind.ESP_BOOTLOADER, 0x1000), (ImageKind.ESP_APP, 0x10000)]
    assert verify_stream(release.bundle, [key.public]).ok


def test_release_value_reprs_never_show_image_bytes(key: keys.SigningKey) -> None:
    release = particle_release(key)
    assert len(repr(release)) < 5000
    assert "data=" not in repr(dataclasses.replace(release.images[0]))


# --- whole-pipeline properties ----------------------------------------------------------------------


@settings(max_examples=40, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    payload=st.binary(min_size=1, max_size=600),
    product_id=st.integers(1, 0xFFFF),
    product_version=st.integers(0, 0xFFFF),
    with_system=st.booleans(),
    notes=st.text(st.characters(codec="utf-8", exclude_categories=("Cc", "Cs")), max_size=40),
)
def test_any_particle_release_round_trips_through_verify(
    key: keys.SigningKey, payload: bytes, product_id: int, product_version: int, with_system: bool, notes: str
) -> None:
    assume((product_id, product_version) != (0xFFFF, 0xFFFF))  # "no product"; refused, tested below
    inputs = [ReleaseInput("app.bin", argon_user_part(payload=payload))]
    if with_system:
        inputs.append(ReleaseInput("system.bin", argon_system_part()))
    release = _release(key, inputs, product_id=product_id, product_version=product_version, notes=notes)
    result = verify_stream(release.bundle, [key.public])
    assert result.ok, result.failed
    assert result.manifest == release.manifest
    assert [i.data for i in result.images] == [r.data for r in release.images]
    app = parse_module(result.images[-1].data)
    assert (app.suffix.product_id, app.suffix.product_version) == (product_id, product_version)
    assert [i.name for i in result.images] == (["system.bin", "app.bin"] if with_system else ["app.bin"])


@settings(max_examples=15, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture])
@given(
    version=st.text(st.characters(min_codepoint=0x21, max_codepoint=0x7E), min_size=1, max_size=31),
    chip=st.sampled_from(["esp32", "esp32s3", "esp32c3", "esp32c6"]),
    page=st.integers(1, 0x3F),
)
def test_any_esp_release_round_trips_through_verify(key: keys.SigningKey, version: str, chip: str, page: int) -> None:
    image = build_app_image(chip=chip, version=version, payload_size=256)
    table = build_partition_table([Partition("factory", 0, 0, page * 0x10000, 0x40000, 0)])
    inputs = [ReleaseInput("app.bin", image, page * 0x10000), ReleaseInput("pt.bin", table, 0x8000)]
    release = _release(key, inputs)
    result = verify_stream(release.bundle, [key.public])
    assert result.ok, result.failed
    entry = result.manifest.images[-1] if result.manifest else None
    assert entry is not None and entry.esp is not None
    assert (entry.esp.chip, entry.esp.app_version, entry.address) == (chip, version, page * 0x10000)
