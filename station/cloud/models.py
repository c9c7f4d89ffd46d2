"""The cloud's answers as frozen values, parsed and checked: the API is untrusted input like any other.

A body that does not have the documented shape raises ``CloudUnavailable`` ("unusable answer"), so a
caller never changes a record on the strength of a response it could not read.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from enum import StrEnum

from station.cloud.errors import CloudUnavailable

# One import or list answer never legitimately names more identifiers than this.
MAX_IDS_IN_ANSWER = 1_000_000


class ImportOutcome(StrEnum):
    """What the cloud said about one requested identifier."""

    UPDATED = "updated"  # added to the product now
    EXISTING = "existing"  # already in the product: as good as added
    NONMEMBER = "nonmember"  # claimed by an account outside the product team
    INVALID = "invalid"  # malformed ID, or a device of another platform
    PROTECTED = "protected"  # protected device: cannot be imported
    UNMENTIONED = "unmentioned"  # the answer does not say: leave it pending

    @property
    def synced(self) -> bool:
        return self in (ImportOutcome.UPDATED, ImportOutcome.EXISTING)


def _bad(what: str) -> CloudUnavailable:
    return CloudUnavailable(f"unusable answer from the cloud: {what}")


def _id_list(body: Mapping[str, object], key: str) -> tuple[str, ...] | None:
    if key not in body or body[key] is None:
        return None
    value = body[key]
    if not isinstance(value, list):
        raise _bad(f"{key} is not a list")
    if len(value) > MAX_IDS_IN_ANSWER:
        raise _bad(f"{key} has {len(value)} entries")
    if not all(isinstance(v, str) and len(v) <= 256 for v in value):
        raise _bad(f"{key} holds something other than identifiers")
    return tuple(value)


def _norm(identifier: str) -> str:
    # The CLI compares identifiers trimmed and case-insensitively; so do we.
    return identifier.strip().lower()


@dataclass(frozen=True)
class ImportResult:
    """The answer to ``POST /v1/products/:product/devices``.

    ``updated_ids``/``existing_ids``/``protected_ids`` are None when the answer is of the older form
    that only had ``updated``, ``nonmemberDeviceIds`` and ``invalidDeviceIds``.
    """

    updated: int
    updated_ids: tuple[str, ...] | None
    existing_ids: tuple[str, ...] | None
    nonmember_ids: tuple[str, ...]
    invalid_ids: tuple[str, ...]
    protected_ids: tuple[str, ...] | None

    @classmethod
    def from_json(cls, body: object) -> ImportResult:
        if not isinstance(body, Mapping):
            raise _bad("import result is not a JSON object")
        updated = body.get("updated", None)
        if not isinstance(updated, int) or isinstance(updated, bool) or updated < 0:
            raise _bad(f"updated is {updated!r}, not a count")
        updated_ids = _id_list(body, "updatedDeviceIds")
        existing_ids = _id_list(body, "existingDeviceIds")
        nonmember_ids = _id_list(body, "nonmemberDeviceIds")
        invalid_ids = _id_list(body, "invalidDeviceIds")
        # The older form reads "not rejected = accepted", so it must at least carry both rejection
        # lists: a bare {"updated": 0} would otherwise mark every device synced.
        if updated_ids is None and existing_ids is None and (nonmember_ids is None or invalid_ids is None):
            raise _bad("import result names no device lists")
        return cls(
            updated=updated,
            updated_ids=updated_ids,
            existing_ids=existing_ids,
            nonmember_ids=nonmember_ids or (),
            invalid_ids=invalid_ids or (),
            protected_ids=_id_list(body, "protectedDeviceIds"),
        )

    def outcomes(self, requested: Sequence[str]) -> dict[str, ImportOutcome]:
        """The outcome for each requested identifier, keyed as requested.

        A rejection list wins over an acceptance list if an answer names an ID in both. In the older
        form, an ID the answer does not reject was accepted (that is how particle-cli reads it).
        """
        marks: dict[str, ImportOutcome] = {}
        accepted = ((self.updated_ids, ImportOutcome.UPDATED), (self.existing_ids, ImportOutcome.EXISTING))
        rejected = (
            (self.protected_ids, ImportOutcome.PROTECTED),
            (self.nonmember_ids, ImportOutcome.NONMEMBER),
            (self.invalid_ids, ImportOutcome.INVALID),
        )
        for ids, outcome in (*accepted, *rejected):
            for identifier in ids or ():
                marks[_norm(identifier)] = outcome
        newer_form = self.updated_ids is not None or self.existing_ids is not None
        fallback = ImportOutcome.UNMENTIONED if newer_form else ImportOutcome.UPDATED
        return {r: marks.get(_norm(r), fallback) for r in requested}


def _opt_str(obj: Mapping[str, object], key: str) -> str | None:
    value = obj.get(key)
    return value if isinstance(value, str) else None


def _opt_int(obj: Mapping[str, object], key: str) -> int | None:
    value = obj.get(key)
    return value if isinstance(value, int) and not isinstance(value, bool) else None


def _opt_bool(obj: Mapping[str, object], key: str) -> bool | None:
    value = obj.get(key)
    return value if isinstance(value, bool) else None


@dataclass(frozen=True)
class ProductDevice:
    """One device as a product's device list shows it (the fields the station uses)."""

    id: str
    name: str | None = None
    platform_id: int | None = None
    product_id: int | None = None
    online: bool | None = None
    development: bool | None = None
    quarantined: bool | None = None
    firmware_version: int | None = None
    desired_firmware_version: int | None = None
    groups: tuple[str, ...] = ()
    serial_number: str | None = None
    last_heard: str | None = None

    @classmethod
    def from_json(cls, obj: object) -> ProductDevice:
        if not isinstance(obj, Mapping):
            raise _bad("a device entry is not a JSON object")
        device_id = obj.get("id")
        if not isinstance(device_id, str) or not device_id or len(device_id) > 256:
            raise _bad("a device entry has no usable id")
        raw_groups = obj.get("groups")
        groups = tuple(g for g in raw_groups if isinstance(g, str)) if isinstance(raw_groups, list) else ()
        online = _opt_bool(obj, "online")
        return cls(
            id=device_id,
            name=_opt_str(obj, "name"),
            platform_id=_opt_int(obj, "platform_id"),
            product_id=_opt_int(obj, "product_id"),
            online=online if online is not None else _opt_bool(obj, "connected"),
            development=_opt_bool(obj, "development"),
            quarantined=_opt_bool(obj, "quarantined"),
            firmware_version=_opt_int(obj, "firmware_version"),
            desired_firmware_version=_opt_int(obj, "desired_firmware_version"),
            groups=groups,
            serial_number=_opt_str(obj, "serial_number"),
            last_heard=_opt_str(obj, "last_heard"),
        )


@dataclass(frozen=True)
class DevicePage:
    """One page of ``GET /v1/products/:product/devices``."""

    devices: tuple[ProductDevice, ...]
    page: int
    per_page: int
    total_pages: int
    total: int | None

    @classmethod
    def from_json(cls, body: object, *, asked_page: int) -> DevicePage:
        if not isinstance(body, Mapping):
            raise _bad("device list is not a JSON object")
        devices = body.get("devices")
        if not isinstance(devices, list):
            raise _bad("device list has no devices array")
        if len(devices) > MAX_IDS_IN_ANSWER:
            raise _bad(f"device page has {len(devices)} entries")
        meta = body.get("meta")
        if not isinstance(meta, Mapping):
            raise _bad("device list has no meta object")
        total_pages = _opt_int(meta, "total_pages")
        if total_pages is None or total_pages < 0:
            raise _bad(f"meta.total_pages is {meta.get('total_pages')!r}")
        page = _opt_int(meta, "page")
        per_page = _opt_int(meta, "per_page")
        return cls(
            devices=tuple(ProductDevice.from_json(d) for d in devices),
            page=page if page is not None and page > 0 else asked_page,
            per_page=per_page if per_page is not None and per_page > 0 else len(devices),
            total_pages=total_pages,
            total=_opt_int(meta, "total"),
        )


@dataclass(frozen=True)
class ProductFirmware:
    """One product firmware version as ``GET /v1/products/:product/firmware`` lists it."""

    version: int
    title: str | None = None
    description: str | None = None
    size: int | None = None
    device_count: int | None = None  # devices running it, as the cloud counts them
    current: bool = False  # released as the product default
    groups: tuple[str, ...] = ()  # groups it is released to
    uploaded_at: str | None = None
    uploaded_by: str | None = None

    @property
    def released(self) -> bool:
        return self.current or bool(self.groups)

    @classmethod
    def from_json(cls, obj: object) -> ProductFirmware:
        if not isinstance(obj, Mapping):
            raise _bad("a firmware entry is not a JSON object")
        version = _opt_int(obj, "version")
        if version is None or version < 0:
            raise _bad(f"a firmware entry has version {obj.get('version')!r}")
        uploaded_by = obj.get("uploaded_by")
        who = _opt_str(uploaded_by, "username") if isinstance(uploaded_by, Mapping) else None
        raw_groups = obj.get("groups")
        groups = tuple(g for g in raw_groups if isinstance(g, str)) if isinstance(raw_groups, list) else ()
        return cls(
            version=version,
            title=_opt_str(obj, "title"),
            description=_opt_str(obj, "description"),
            size=_opt_int(obj, "size"),
            device_count=_opt_int(obj, "device_count"),
            current=_opt_bool(obj, "current") is True or _opt_bool(obj, "product_default") is True,
            groups=groups,
            uploaded_at=_opt_str(obj, "uploaded_at"),
            uploaded_by=who,
        )

    @classmethod
    def list_from_json(cls, body: object) -> tuple[ProductFirmware, ...]:
        # particle-api-js types the answer as an array; accept {"firmware": [...]} too.
        items = body.get("firmware") if isinstance(body, Mapping) else body
        if not isinstance(items, list):
            raise _bad("firmware list is not an array")
        if len(items) > MAX_IDS_IN_ANSWER:
            raise _bad(f"firmware list has {len(items)} entries")
        return tuple(sorted((cls.from_json(i) for i in items), key=lambda f: f.version))


@dataclass(frozen=True)
class ProductGroup:
    """A device group of a product."""

    name: str
    description: str | None = None
    device_count: int | None = None

    @classmethod
    def from_json(cls, obj: object) -> ProductGroup:
        if not isinstance(obj, Mapping):
            raise _bad("a group entry is not a JSON object")
        name = obj.get("name")
        if not isinstance(name, str) or not name or len(name) > 256:
            raise _bad("a group entry has no usable name")
        return cls(name=name, description=_opt_str(obj, "description"), device_count=_opt_int(obj, "device_count"))

    @classmethod
    def list_from_json(cls, body: object) -> tuple[ProductGroup, ...]:
        items = body.get("groups") if isinstance(body, Mapping) else body
        if not isinstance(items, list):
            raise _bad("group list has no groups array")
        if len(items) > MAX_IDS_IN_ANSWER:
            raise _bad(f"group list has {len(items)} entries")
        return tuple(cls.from_json(i) for i in items)


@dataclass(frozen=True)
class ProductInfo:
    """``GET /v1/products/:product``: what the station needs to check an upload against."""

    id: int
    slug: str | None = None
    name: str | None = None
    platform_id: int | None = None

    @classmethod
    def from_json(cls, body: object) -> ProductInfo:
        obj = body.get("product") if isinstance(body, Mapping) else None
        if not isinstance(obj, Mapping):
            raise _bad("product answer has no product object")
        product_id = _opt_int(obj, "id")
        if product_id is None or product_id <= 0:
            raise _bad(f"product id is {obj.get('id')!r}")
        return cls(
            id=product_id,
            slug=_opt_str(obj, "slug"),
            name=_opt_str(obj, "name"),
            platform_id=_opt_int(obj, "platform_id"),
        )
