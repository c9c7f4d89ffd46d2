"""The simulated console's world: products, the devices in each, and who else owns what.

Kept apart from HTTP so tests and ``--state FILE`` can build, inspect and persist it directly. The
state is saved as JSON through ``write_atomic``, so a killed console never leaves half a file.
"""

from __future__ import annotations

import base64
import json
import re
import time
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field, replace
from pathlib import Path

from firmware_tools.fileio import write_atomic

DEVICE_ID = re.compile(r"[0-9a-f]{24}")
SLUG = re.compile(r"[a-z0-9][a-z0-9-]{0,63}")
STATE_VERSION = 1
MAX_STATE_BYTES = 256 * 1024 * 1024


class StateFileError(ValueError):
    """The --state file is not one this console wrote."""


@dataclass(frozen=True)
class SimProduct:
    id: int
    slug: str
    name: str = ""
    platform_id: int | None = None  # devices of another known platform are refused as invalid

    def __post_init__(self) -> None:
        if not 0 < self.id < 2**31:
            raise ValueError(f"product id must be a positive integer, got {self.id}")
        if not SLUG.fullmatch(self.slug):
            raise ValueError(f"product slug must be lowercase letters, digits and -, got {self.slug!r}")

    def to_json(self) -> dict[str, object]:
        return {"id": self.id, "slug": self.slug, "name": self.name or self.slug, "platform_id": self.platform_id}


@dataclass(frozen=True)
class SimDevice:
    """A device as the product holds it."""

    id: str
    product_id: int
    platform_id: int | None = None
    name: str | None = None
    added_at: float = 0.0
    development: bool = False
    quarantined: bool = False
    groups: tuple[str, ...] = ()
    firmware_version: int | None = None
    desired_firmware_version: int | None = None
    notes: str | None = None
    sim_imported: bool = False
    online: bool = False
    last_heard: float | None = None  # unix seconds of the last handshake
    flash_requested: bool = False  # locked with flash=true: the cloud pushes the locked version

    def to_json(self) -> dict[str, object]:
        """The device the way the product device list shows it."""
        heard = None
        if self.last_heard is not None:
            heard = time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(self.last_heard))
        return {
            "id": self.id,
            "name": self.name,
            "platform_id": self.platform_id,
            "product_id": self.product_id,
            "online": self.online,
            "connected": self.online,
            "last_heard": heard,
            "development": self.development,
            "quarantined": self.quarantined,
            "denied": False,
            "groups": list(self.groups),
            "firmware_version": self.firmware_version,
            "desired_firmware_version": self.desired_firmware_version,
            "notes": self.notes,
            "serial_number": None,
        }


@dataclass(frozen=True)
class SimFirmware:
    """A product firmware version: the binary as uploaded, and where it is released."""

    version: int
    title: str
    data: bytes = field(repr=False)
    description: str = ""
    uploaded_at: float = 0.0
    uploaded_by: str = "sim-user@example.com"
    product_default: bool = False  # released to the whole product
    groups: tuple[str, ...] = ()  # released to these groups

    @property
    def released(self) -> bool:
        return self.product_default or bool(self.groups)

    def to_json(self, device_count: int) -> dict[str, object]:
        return {
            "version": self.version,
            "title": self.title,
            "description": self.description,
            "size": len(self.data),
            "device_count": device_count,
            "current": self.product_default,
            "product_default": self.product_default,
            "groups": list(self.groups),
            "uploaded_at": time.strftime("%Y-%m-%dT%H:%M:%S.000Z", time.gmtime(self.uploaded_at)),
            "uploaded_by": {"username": self.uploaded_by},
        }


@dataclass(frozen=True)
class SimGroup:
    name: str
    description: str = ""
    color: str = "#777777"


@dataclass
class ProductDevices:
    """One product's devices in the order they were added, with an index for lookups."""

    order: list[str] = field(default_factory=list)
    by_id: dict[str, SimDevice] = field(default_factory=dict)

    def __contains__(self, device_id: object) -> bool:
        return device_id in self.by_id

    def __len__(self) -> int:
        return len(self.order)

    def __iter__(self) -> Iterator[SimDevice]:
        return (self.by_id[d] for d in self.order)

    def add(self, device: SimDevice) -> None:
        if device.id not in self.by_id:
            self.order.append(device.id)
        self.by_id[device.id] = device

    def remove(self, device_id: str) -> bool:
        if device_id not in self.by_id:
            return False
        del self.by_id[device_id]
        self.order.remove(device_id)
        return True

    def update(self, device_id: str, **changes: object) -> SimDevice:
        device = replace(self.by_id[device_id], **changes)  # type: ignore[arg-type]
        self.by_id[device_id] = device
        return device

    def page(self, start: int, stop: int) -> list[SimDevice]:
        return [self.by_id[d] for d in self.order[start:stop]]


@dataclass
class ConsoleState:
    """Everything the console knows. Callers hold the console's lock while they touch it."""

    products: dict[int, SimProduct] = field(default_factory=dict)
    devices: dict[int, ProductDevices] = field(default_factory=dict)
    # Device IDs claimed by accounts outside the product team: imports answer "nonmember".
    claimed_elsewhere: set[str] = field(default_factory=set)
    # Protected devices (imports answer "protected").
    protected: set[str] = field(default_factory=set)
    # Platforms of devices the cloud already knows, to refuse a device of the wrong platform.
    platforms: dict[str, int] = field(default_factory=dict)
    # Product ID -> version -> firmware; product ID -> group name -> group.
    firmware: dict[int, dict[int, SimFirmware]] = field(default_factory=dict)
    groups: dict[int, dict[str, SimGroup]] = field(default_factory=dict)

    def add_product(self, product: SimProduct) -> None:
        for other in self.products.values():
            if other.slug == product.slug and other.id != product.id:
                raise ValueError(f"slug {product.slug!r} is taken by product {other.id}")
        self.products[product.id] = product
        self.devices.setdefault(product.id, ProductDevices())
        self.firmware.setdefault(product.id, {})
        self.groups.setdefault(product.id, {})

    def find_product(self, id_or_slug: str) -> SimProduct | None:
        if id_or_slug.isascii() and id_or_slug.isdigit():
            return self.products.get(int(id_or_slug))
        return next((p for p in self.products.values() if p.slug == id_or_slug), None)

    def claim_elsewhere(self, device_ids: Iterable[str]) -> None:
        self.claimed_elsewhere.update(d.lower() for d in device_ids)

    def protect(self, device_ids: Iterable[str]) -> None:
        self.protected.update(d.lower() for d in device_ids)

    # -- persistence --------------------------------------------------------------------------

    def to_json(self) -> dict[str, object]:
        return {
            "version": STATE_VERSION,
            "products": [asdict(p) for p in self.products.values()],
            "devices": {str(pid): [_device_json(d) for d in devices] for pid, devices in self.devices.items()},
            "claimed_elsewhere": sorted(self.claimed_elsewhere),
            "protected": sorted(self.protected),
            "platforms": dict(sorted(self.platforms.items())),
            "firmware": {
                str(pid): [_firmware_json(f) for _, f in sorted(versions.items())]
                for pid, versions in self.firmware.items()
            },
            "groups": {str(pid): [asdict(g) for g in groups.values()] for pid, groups in self.groups.items()},
        }

    @classmethod
    def from_json(cls, data: object) -> ConsoleState:
        try:
            return cls._from_json(data)
        except (KeyError, TypeError, ValueError, AttributeError) as exc:
            raise StateFileError(f"not a console state file: {exc}") from None

    @classmethod
    def _from_json(cls, data: object) -> ConsoleState:
        if not isinstance(data, dict) or data.get("version") != STATE_VERSION:
            raise ValueError(f"expected an object with version {STATE_VERSION}")
        state = cls()
        for p in data["products"]:
            state.add_product(
                SimProduct(
                    id=int(p["id"]), slug=str(p["slug"]), name=str(p.get("name", "")), platform_id=p.get("platform_id")
                )
            )
        for pid, devices in dict(data["devices"]).items():
            bucket = state.devices.setdefault(int(pid), ProductDevices())
            for d in devices:
                if not DEVICE_ID.fullmatch(str(d["id"])):
                    raise ValueError(f"bad device id {d['id']!r}")
                d = dict(d)
                d["groups"] = tuple(d.get("groups", ()))
                bucket.add(SimDevice(**d))
        state.claimed_elsewhere = {str(d) for d in data.get("claimed_elsewhere", [])}
        state.protected = {str(d) for d in data.get("protected", [])}
        state.platforms = {str(k): int(v) for k, v in dict(data.get("platforms", {})).items()}
        for pid, versions in dict(data.get("firmware", {})).items():
            bucket_fw = state.firmware.setdefault(int(pid), {})
            for f in versions:
                f = dict(f)
                f["data"] = base64.b64decode(str(f["data"]), validate=True)
                f["groups"] = tuple(str(g) for g in f.get("groups", ()))
                firmware = SimFirmware(**f)
                bucket_fw[int(firmware.version)] = firmware
        for pid, groups in dict(data.get("groups", {})).items():
            bucket_g = state.groups.setdefault(int(pid), {})
            for g in groups:
                group = SimGroup(**dict(g))
                bucket_g[str(group.name)] = group
        return state

    def save(self, path: Path) -> None:
        write_atomic(path, json.dumps(self.to_json(), separators=(",", ":")).encode(), mode=0o600)

    @classmethod
    def load(cls, path: Path) -> ConsoleState:
        with path.open("rb") as fh:
            raw = fh.read(MAX_STATE_BYTES + 1)
        if len(raw) > MAX_STATE_BYTES:
            raise StateFileError(f"{path}: larger than {MAX_STATE_BYTES} bytes")
        try:
            data = json.loads(raw)
        except (ValueError, RecursionError) as exc:
            raise StateFileError(f"{path}: not JSON ({exc})") from None
        return cls.from_json(data)


def _firmware_json(firmware: SimFirmware) -> dict[str, object]:
    out = asdict(firmware)
    out["data"] = base64.b64encode(firmware.data).decode("ascii")
    out["groups"] = list(firmware.groups)
    return out


def _device_json(device: SimDevice) -> dict[str, object]:
    out = asdict(device)
    out["groups"] = list(device.groups)
    return out
