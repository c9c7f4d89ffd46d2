"""ESP flash layout rules: esptool's bootloader offsets, a property test against an independent statement
of the rules, every range/alignment mutation of a partition table refused, and the issue's commands."""

from __future__ import annotations

import dataclasses
import json
import struct
from pathlib import Path

import pytest
from click.testing import CliRunner
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_tools import keys
from firmware_tools.bundle.partition_table import Partition, build_partition_table, parse_partition_table
from firmware_tools.cli import main as fwtool
from firmware_tools.esp import build_app_image
from firmware_tools.esp.builder import build_bootloader_image
from firmware_tools.esp.chips import CHIPS
from firmware_tools.esp.flash_layout import Kind, Piece, bootloader_offset, image_kind, layout_checks
from firmware_tools.esp.image import parse_esp_image
from tests.conftest import fixture_dir

# The issue's statement of esptool's BOOTLOADER_FLASH_OFFSET, written out again on purpose.
ISSUE_OFFSETS = {
    "esp32": 0x1000,
    "esp32s2": 0x1000,
    "esp32s3": 0x0,
    "esp32c2": 0x0,
    "esp32c3": 0x0,
    "esp32c6": 0x0,
    "esp32c61": 0x0,
    "esp32h2": 0x0,
    "esp32c5": 0x2000,
    "esp32p4": 0x2000,
    "esp32h4": 0x2000,
}


def test_bootloader_offsets_are_esptools_own() -> None:
    from esptool.targets import CHIP_DEFS

    for chip in CHIPS:
        if chip.key in CHIP_DEFS:
            assert bootloader_offset(chip.key) == CHIP_DEFS[chip.key].BOOTLOADER_FLASH_OFFSET, chip.key
    for key, offset in ISSUE_OFFSETS.items():
        assert bootloader_offset(key) == offset


def test_the_kind_comes_from_the_content() -> None:
    assert image_kind(parse_esp_image(build_bootloader_image(chip="esp32c3"))) is Kind.BOOTLOADER
    assert image_kind(parse_esp_image(build_app_image(chip="esp32c3"))) is Kind.APP


def test_fixture_kinds() -> None:
    folder = fixture_dir("esp")
    kinds = {
        p.name: image_kind(parse_esp_image(p.read_bytes()))
        for p in sorted(folder.glob("*.bin"))
        if p.name not in ("partitions_singleapp.bin", "hello-world-signed-encrypted.bin")
    }
    assert kinds == {
        "bootloader_esp32.bin": Kind.BOOTLOADER,
        "bootloader_esp32_v5_2.bin": Kind.BOOTLOADER,
        "bootloader_esp32c3.bin": Kind.BOOTLOADER,
        "esp_idf_blink_esp32s2.bin": Kind.APP,
        "hello-world-signed.bin": Kind.APP,
        "helloworld-esp32.bin": Kind.APP,
        "helloworld-esp32c3.bin": Kind.APP,
        "helloworld-esp32s3.bin": Kind.APP,
    }


# ---- the rules, stated independently, against generated layouts --------------------------------


def _expected_failures(
    chip: str, pieces: list[Piece], table: list[Partition] | None, flash_size: int | None
) -> set[str]:
    """The issue's rules in plain words: which named rules this layout breaks."""
    broken: set[str] = set()
    apps = {p.offset: p for p in table or [] if p.type == 0 and (p.subtype == 0 or 0x10 <= p.subtype <= 0x1F)}
    datas = {p.offset: p for p in table or [] if p.type == 1}
    for x in pieces:
        end = x.address + x.size
        if x.chip is not None and x.chip != chip:
            broken.add("chip")
        if x.kind is Kind.BOOTLOADER:
            if x.address != ISSUE_OFFSETS[chip]:
                broken.add("bootloader-offset")
            elif end > 0x8000:
                broken.add("bootloader-size")
        elif x.kind is Kind.PARTITION_TABLE:
            if x.address != 0x8000:
                broken.add("partition-table-offset")
        elif x.kind is Kind.APP:
            if table is None:
                if x.address != 0x10000:
                    broken.add("app-partition")
            elif x.address not in apps:
                broken.add("app-partition")
            elif x.size > apps[x.address].size:
                broken.add("app-size")
        elif table is None or x.address not in datas:
            broken.add("data-partition")
        elif x.size > datas[x.address].size:
            broken.add("data-size")
        if flash_size is not None and end > flash_size:
            broken.add("flash-size")
    for i, a in enumerate(pieces):
        for b in pieces[i + 1 :]:
            if a.address < b.address + b.size and b.address < a.address + a.size:
                broken.add("overlap")
    if flash_size is not None and any(p.offset + p.size > flash_size for p in table or []):
        broken.add("flash-size")
    return broken


_CHIP = st.sampled_from(sorted(ISSUE_OFFSETS))
_ADDRESSES = st.one_of(
    st.sampled_from([0x0, 0x1000, 0x2000, 0x8000, 0x9000, 0x10000, 0x20000, 0x110000, 0x150000, 0x200000]),
    st.integers(0, 0x400).map(lambda n: n * 0x1000),
)
_TABLE = [
    Partition("nvs", 1, 2, 0x9000, 0x6000, 0),
    Partition("phy_init", 1, 1, 0xF000, 0x1000, 0),
    Partition("factory", 0, 0, 0x10000, 0x100000, 0),
    Partition("ota_0", 0, 0x10, 0x110000, 0x40000, 0),
    Partition("storage", 1, 0x82, 0x150000, 0x40000, 0),
    Partition("test", 0, 0x20, 0x190000, 0x10000, 0),
]


@st.composite
def _layouts(draw: st.DrawFn) -> tuple[str, list[Piece], list[Partition] | None, int | None]:
    chip = draw(_CHIP)
    table = draw(st.one_of(st.none(), st.just(_TABLE), st.lists(st.sampled_from(_TABLE), unique=True, max_size=4)))
    pieces: list[Piece] = []
    for n in range(draw(st.integers(1, 5))):
        kind = draw(st.sampled_from(list(Kind)))
        size = draw(st.sampled_from([0x80, 0x1000, 0x6000, 0x20000, 0x40000, 0x40001, 0x100000, 0x180000]))
        other = draw(_CHIP)
        image_chip = None if kind in (Kind.PARTITION_TABLE, Kind.DATA) else draw(st.sampled_from([chip, other]))
        pieces.append(Piece(f"p{n}", draw(_ADDRESSES), size, kind, image_chip))
    flash_size = draw(st.sampled_from([None, 1 << 20, 2 << 20, 4 << 20]))
    return chip, pieces, table, flash_size


@settings(max_examples=400, deadline=None)
@given(_layouts())
def test_layout_checks_agree_with_the_rules_as_stated(
    layout: tuple[str, list[Piece], list[Partition] | None, int | None],
) -> None:
    chip, pieces, table, flash_size = layout
    parsed = parse_partition_table(build_partition_table(table)) if table else None
    if table is not None and not table:
        parsed = None
        table = None
    checks = layout_checks(pieces, chip=chip, table=parsed, flash_size=flash_size)
    failed = {c.name for _, c in checks if c.ok is False}
    assert failed == _expected_failures(chip, pieces, table, flash_size)
    for _, check in checks:
        if check.ok is False:
            assert "0x" in check.reason  # every failure names an address


# ---- partition table mutations ----------------------------------------------------------------

# nvs (data) at 0x9000, phy (data) at 0xF000, factory (app) at 0x10000, as ESP-IDF's single-app table.
SINGLE_APP = [
    Partition("nvs", 1, 2, 0x9000, 0x6000, 0),
    Partition("phy_init", 1, 1, 0xF000, 0x1000, 0),
    Partition("factory", 0, 0, 0x10000, 0x100000, 0),
]
_BAD_VALUES = [
    0x0,
    0x1,
    0x800,
    0x1000,
    0x8000,
    0x8800,
    0x9001,
    0x10800,
    0x7FFFFFFF,
    0x80000000,
    0xFFFFFFFF,
    0xFFFFF000,
    0x10000000,
]


def _mutations(table: bytes) -> list[tuple[str, bytes]]:
    """Every offset/size field set to values that break a range or alignment rule (same length)."""
    out = []
    for i in range(len(table) // 32):
        entry = table[i * 32 : i * 32 + 32]
        if entry[:2] != b"\xaa\x50":
            break
        ptype = entry[2]
        for field, pos in (("offset", 4), ("size", 8)):
            for value in _BAD_VALUES:
                if field == "size" and value and value % 0x1000 == 0 and value < 0x10000000:
                    continue  # an aligned, in-range size is not a range/alignment mutation by itself
                if (
                    field == "offset"
                    and value % (0x10000 if ptype == 0 else 0x1000) == 0
                    and 0x9000 <= value < 0x10000000
                ):
                    continue
                mutated = bytearray(table)
                struct.pack_into("<I", mutated, i * 32 + pos, value)
                out.append((f"entry {i} {field}={value:#x}", bytes(mutated)))
    return out


def _validate(path: Path) -> tuple[int, str]:
    result = CliRunner().invoke(fwtool, ["validate", str(path)])
    return result.exit_code, result.output


@pytest.mark.parametrize("with_md5", [False, True])
def test_every_range_or_alignment_mutation_is_refused_by_validate(tmp_path: Path, with_md5: bool) -> None:
    table = build_partition_table(SINGLE_APP, with_md5=with_md5)[: 32 * 4 if with_md5 else 32 * 3]
    path = tmp_path / "pt.bin"
    path.write_bytes(table)
    assert _validate(path)[0] == 0
    mutations = _mutations(table)
    assert len(mutations) > 60
    for label, data in mutations:
        path.write_bytes(data)
        code, out = _validate(path)
        assert code == 1, (label, out)
        assert "table-range" in out or "table-alignment" in out or "table-overlap" in out, (label, out)


def test_every_mutation_of_the_real_table_is_refused(tmp_path: Path) -> None:
    real = (fixture_dir("esp") / "partitions_singleapp.bin").read_bytes()
    path = tmp_path / "pt.bin"
    path.write_bytes(real)
    assert _validate(path)[0] == 0
    for label, data in _mutations(real):
        path.write_bytes(data)
        assert _validate(path)[0] == 1, label


def test_names_md5_and_nvs_size() -> None:
    dup = build_partition_table([*SINGLE_APP, Partition("nvs", 1, 2, 0x110000, 0x6000, 0)])
    failed = {c.name for c in parse_partition_table(dup).checks() if c.ok is False}
    assert failed == {"table-names"}
    data = bytearray(build_partition_table(SINGLE_APP))
    data[12] ^= 1  # a size byte: still aligned? no -- the MD5 no longer matches either way
    failed = {c.name for c in parse_partition_table(bytes(data)).checks() if c.ok is False}
    assert "table-md5" in failed
    small = build_partition_table([Partition("nvs", 1, 2, 0x9000, 0x2000, 0)])
    assert {c.name for c in parse_partition_table(small).checks() if c.ok is False} == {"table-nvs-size"}
    readonly = build_partition_table([Partition("nvs", 1, 2, 0x9000, 0x2000, 0x2)])
    assert all(c.ok is not False for c in parse_partition_table(readonly).checks())


# ---- the issue's commands -------------------------------------------------------------------------


@pytest.fixture
def signing(tmp_path: Path) -> tuple[Path, Path]:
    result = CliRunner().invoke(fwtool, ["keygen", "-o", str(tmp_path / "release")])
    assert result.exit_code == 0, result.output
    return keys.key_paths(tmp_path / "release")


def _own_files(tmp_path: Path) -> dict[str, Path]:
    files = {
        "boot": build_bootloader_image(chip="esp32", flash_size="2MB"),
        "table": build_partition_table(
            [
                Partition("factory", 0, 0, 0x10000, 0x100000, 0),
                Partition("rfdata", 1, 1, 0x110000, 0x40000, 0),
                Partition("wifidata", 1, 2, 0x150000, 0x40000, 0),
            ],
            with_md5=False,
        )[:96],
        "app": build_app_image(chip="esp32", payload_size=2048),
    }
    out = {}
    for name, data in files.items():
        out[name] = tmp_path / f"{name}.bin"
        out[name].write_bytes(data)
    return out


def _fixture_files(tmp_path: Path) -> dict[str, Path]:
    folder = fixture_dir("esp")
    return {
        "boot": folder / "bootloader_esp32.bin",
        "table": folder / "partitions_singleapp.bin",
        "app": folder / "helloworld-esp32.bin",
    }


def _release(files: dict[str, Path], key: Path, out: Path, boot: int, app: int) -> tuple[int, str]:
    args = [
        "release",
        f"{boot:#x}={files['boot']}",
        f"0x8000={files['table']}",
        f"{app:#x}={files['app']}",
        "--product-id",
        "1234",
        "--product-version",
        "3",
        "--key",
        str(key),
        "-o",
        str(out),
    ]
    result = CliRunner().invoke(fwtool, args)
    return result.exit_code, result.output


@pytest.mark.parametrize("source", [_own_files, _fixture_files], ids=["own-encoders", "fixtures"])
def test_the_issues_release_is_refused_and_the_right_one_releases_and_verifies(
    tmp_path: Path, signing: tuple[Path, Path], source: object
) -> None:
    files = source(tmp_path)  # type: ignore[operator]
    key, pub = signing
    bad = tmp_path / "bad.fwpkg"
    code, out = _release(files, key, bad, 0x0, 0x20000)
    assert code == 1 and not bad.exists()
    assert "bootloader-offset" in out and "put it at 0x1000" in out
    assert "app-partition" in out and "put it at 0x10000" in out
    good = tmp_path / "good.fwpkg"
    code, out = _release(files, key, good, 0x1000, 0x10000)
    assert code == 0, out
    result = CliRunner().invoke(fwtool, ["verify", str(good), "--trusted", str(pub)])
    assert result.exit_code == 0, result.output


@pytest.mark.parametrize("source", [_own_files, _fixture_files], ids=["own-encoders", "fixtures"])
def test_validate_checks_address_file_arguments_as_one_layout(tmp_path: Path, source: object) -> None:
    files = source(tmp_path)  # type: ignore[operator]
    bad = CliRunner().invoke(
        fwtool, ["validate", "--json", f"0x0={files['boot']}", f"0x8000={files['table']}", f"0x20000={files['app']}"]
    )
    assert bad.exit_code == 1
    layout = json.loads(bad.output)[-1]
    assert layout["format"] == "esp-layout" and layout["ok"] is False
    failed = {c["name"] for c in layout["checks"] if c["ok"] is False}
    assert failed == {"boot.bin: bootloader-offset", "app.bin: app-partition"} or failed == {
        "bootloader_esp32.bin: bootloader-offset",
        "helloworld-esp32.bin: app-partition",
    }
    good = CliRunner().invoke(
        fwtool, ["validate", f"0x1000={files['boot']}", f"0x8000={files['table']}", f"0x10000={files['app']}"]
    )
    assert good.exit_code == 0, good.output


def _breaks_range_or_alignment(partitions: list[Partition]) -> bool:
    """The issue's table rules, stated again: aligned (apps 64 KiB, others 4 KiB; sizes 4 KiB), above
    the table's sector at 0x8000, inside the largest flash (128 MB), not empty, not overlapping."""
    for p in partitions:
        if p.offset % (0x10000 if p.type == 0 else 0x1000) or p.size % 0x1000 or not p.size:
            return True
        if p.offset < 0x9000 or p.offset + p.size > 128 * 1024 * 1024:
            return True
        if (p.type, p.subtype) == (1, 2) and p.size < 0x3000 and not p.flags & 2:
            return True  # a read/write NVS partition needs three pages
    spans = sorted((p.offset, p.offset + p.size) for p in partitions)
    return any(b[0] < a[1] for i, a in enumerate(spans) for b in spans[i + 1 :])


@settings(max_examples=300, deadline=None)
@given(
    st.integers(0, len(SINGLE_APP) - 1),
    st.sampled_from(["offset", "size"]),
    st.one_of(
        st.integers(0, 0xFFFFFFFF),
        st.integers(0, 0x800).map(lambda n: n * 0x1000),
        st.integers(0, 4).map(lambda n: n * 0x1000),
    ),
)
def test_any_field_value_that_breaks_a_rule_is_refused(index: int, field: str, value: int) -> None:
    mutated = [p if i != index else dataclasses.replace(p, **{field: value}) for i, p in enumerate(SINGLE_APP)]
    table = parse_partition_table(build_partition_table(mutated, with_md5=False))
    refused = any(c.ok is False for c in table.checks())
    assert refused == _breaks_range_or_alignment(mutated)
