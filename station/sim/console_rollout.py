"""The simulated console's rollout endpoints: product firmware (upload, list, download, release),
device updates (lock, unlock, flash, name, groups) and device groups, with the console's rules.

Rules simulated: the version given at upload must be the PRODUCT_VERSION compiled into the binary
(refused with 400 otherwise, as the reference advises); a binary compiled for another product, or for
another platform than the product's, is refused; a version exists once; a version is released only
when at least one device of the product runs it; group names are lowercase letters, digits, ``-`` and
``_``, at most 64 characters. Which firmware a device is targeted with follows the documented
precedence: development devices nothing, then the locked version, then the highest release to one
of its groups, then the product default.

One route is the simulator's own, outside ``/v1``: ``POST /sim/products/:p/devices/:id/handshake``
with ``{"firmware_version": N}``, how a simulated device (or a person with curl) reports what it runs.
"""

from __future__ import annotations

import json
import re
from collections.abc import Mapping
from dataclasses import replace
from typing import TYPE_CHECKING

from firmware_tools.errors import FirmwareError
from firmware_tools.particle import ModuleFunction, parse_module
from station.sim.console_api import Call, FormError, Route, error, parse_form
from station.sim.console_http import ApiResponse
from station.sim.console_state import ConsoleState, SimDevice, SimFirmware, SimGroup

if TYPE_CHECKING:
    from station.sim.console import SimConsole

GROUP_NAME = re.compile(r"[a-z0-9_-]{1,64}")
DEVICE_NAME = re.compile(r"[A-Za-z0-9_-]{1,64}")
MAX_TITLE = 200
MAX_DESCRIPTION = 4000
MAX_FIRMWARE_BYTES = 16 * 1024 * 1024
MAX_VERSION = 0xFFFE  # 0xFFFF in the module suffix means "not product firmware"
# What the console calls the refusals, in the words a user sees them.
MISMATCH = "Version {given} does not match the PRODUCT_VERSION ({compiled}) compiled into the binary."
NOT_RUNNING = "Firmware version {version} must be running on at least one device before it can be released."


def running_count(state: ConsoleState, product_id: int, version: int) -> int:
    return sum(1 for d in state.devices[product_id] if d.firmware_version == version)


def targeted_version(state: ConsoleState, product_id: int, device: SimDevice) -> int | None:
    """The product firmware the cloud would send this device at its next handshake (None: none)."""
    if device.development:
        return None
    if device.desired_firmware_version is not None:
        return device.desired_firmware_version
    versions = state.firmware[product_id].values()
    mine = set(device.groups)
    by_group = [f.version for f in versions if mine.intersection(f.groups)]
    if by_group:
        return max(by_group)
    default = [f.version for f in versions if f.product_default]
    return max(default) if default else None


def _firmware_json(state: ConsoleState, product_id: int, firmware: SimFirmware) -> dict[str, object]:
    return firmware.to_json(running_count(state, product_id, firmware.version))


def _device_json(state: ConsoleState, product_id: int, device: SimDevice) -> dict[str, object]:
    out = device.to_json()
    out["targeted_firmware_release_version"] = targeted_version(state, product_id, device)
    return out


def _version_param(text: str) -> int | None:
    return int(text) if text.isascii() and text.isdigit() and len(text) <= 6 else None


def running_product_version(app_module: bytes) -> int | None:
    """The PRODUCT_VERSION an application module carries (None: not product firmware, or unreadable)."""
    try:
        module = parse_module(app_module)
    except FirmwareError:
        return None
    if module.product_id_meaning in ("absent", "unset"):
        return None
    return module.suffix.product_version


def report_running_firmware(
    console: SimConsole, product: str, device_id: str, app_module: bytes, *, online: bool = True
) -> int | None:
    """A simulated board that runs ``app_module`` (the bytes its flash holds) comes online and tells
    the console its product version, as a real device does at its handshake. Returns the version the
    console reports it running (None when the module is not product firmware)."""
    version = running_product_version(app_module)
    console.device_handshake(product, device_id, version, online=online)
    return version


# -- firmware ------------------------------------------------------------------------------------


def _list_firmware(console: SimConsole, call: Call) -> ApiResponse:
    assert call.product is not None
    pid = call.product.id
    state = console.state
    return ApiResponse(200, [_firmware_json(state, pid, f) for _, f in sorted(state.firmware[pid].items())])


def _find_firmware(console: SimConsole, call: Call) -> SimFirmware | ApiResponse:
    assert call.product is not None
    version = _version_param(call.params["version"])
    firmware = None if version is None else console.state.firmware[call.product.id].get(version)
    if firmware is None:
        return error(404, "not_found", f"Firmware version {call.params['version']} not found in this product.")
    return firmware


def _get_firmware(console: SimConsole, call: Call) -> ApiResponse:
    assert call.product is not None
    found = _find_firmware(console, call)
    if isinstance(found, ApiResponse):
        return found
    return ApiResponse(200, _firmware_json(console.state, call.product.id, found))


def _download_firmware(console: SimConsole, call: Call) -> ApiResponse:
    found = _find_firmware(console, call)
    if isinstance(found, ApiResponse):
        return found
    return ApiResponse(200, raw=found.data, headers=(("Content-Type", "application/octet-stream"),))


def _upload_firmware(console: SimConsole, call: Call) -> ApiResponse:
    assert call.product is not None
    product = call.product
    try:
        form = parse_form(call.request)
    except FormError as exc:
        return error(400, "invalid_request", str(exc))
    # particle-api-js names the part "file", Particle's GitHub action "binary": both are accepted.
    binary = form.files.get("binary", form.files.get("file"))
    if binary is None:
        return error(400, "invalid_request", "A firmware binary is required (multipart part binary or file).")
    if len(binary) > MAX_FIRMWARE_BYTES:
        return error(400, "invalid_request", f"The binary is larger than {MAX_FIRMWARE_BYTES} bytes.")
    version = _version_param(form.fields.get("version", "").strip())
    if version is None or not 1 <= version <= MAX_VERSION:
        return error(400, "invalid_request", f"version must be an integer from 1 to {MAX_VERSION}.")
    title = form.fields.get("title", "").strip()
    if not title:
        return error(400, "invalid_request", "title is required.")
    if len(title) > MAX_TITLE or len(form.fields.get("description", "")) > MAX_DESCRIPTION:
        return error(400, "invalid_request", "title or description is too long.")
    try:
        module = parse_module(binary)
    except FirmwareError as exc:
        return error(400, "invalid_request", f"The binary is not a Particle firmware module: {exc.message}")
    if module.function != ModuleFunction.USER_PART:
        return error(400, "invalid_request", "The binary is not a user application (user part) module.")
    if product.platform_id is not None and module.platform_id != product.platform_id:
        return error(
            400,
            "invalid_request",
            f"The binary is for platform {module.platform_id}; this product's platform is {product.platform_id}.",
        )
    meaning = module.product_id_meaning
    compiled = module.suffix.product_version
    if meaning in ("absent", "unset") or compiled is None:
        return error(400, "invalid_request", "The binary has no PRODUCT_VERSION compiled in.")
    if compiled != version:
        return error(400, "invalid_request", MISMATCH.format(given=version, compiled=compiled))
    if meaning == "product-id" and module.suffix.product_id != product.id:
        return error(
            400,
            "invalid_request",
            f"The binary was compiled with PRODUCT_ID({module.suffix.product_id}), not this product ({product.id}).",
        )
    versions = console.state.firmware[product.id]
    if version in versions:
        return error(400, "invalid_request", f"Version {version} already exists. Use a new version number.")
    firmware = SimFirmware(
        version=version,
        title=title,
        data=binary,
        description=form.fields.get("description", ""),
        uploaded_at=console.now(),
    )
    versions[version] = firmware
    return ApiResponse(200, _firmware_json(console.state, product.id, firmware))


def _json_body(call: Call) -> Mapping[str, object] | ApiResponse:
    """The body as a JSON object (form-encoded values are taken as strings)."""
    ctype = call.request.headers.get("content-type", "").split(";", 1)[0].strip().lower()
    if ctype == "application/json" and call.request.body:
        try:
            data = json.loads(call.request.body)
        except ValueError:
            return error(400, "invalid_request", "body is not valid JSON")
        if not isinstance(data, dict):
            return error(400, "invalid_request", "JSON body must be an object")
        return data
    try:
        return dict(parse_form(call.request).fields)
    except FormError as exc:
        return error(400, "invalid_request", str(exc))


def _as_int(value: object) -> int | None:
    if isinstance(value, bool):
        return None
    if isinstance(value, int):
        return value
    if isinstance(value, str) and value.isascii() and value.isdigit() and len(value) <= 6:
        return int(value)
    return None


def _as_bool(value: object) -> bool | None:
    if isinstance(value, bool):
        return value
    if isinstance(value, str) and value.lower() in ("true", "false"):
        return value.lower() == "true"
    return None


def _release_firmware(console: SimConsole, call: Call) -> ApiResponse:
    assert call.product is not None
    pid = call.product.id
    body = _json_body(call)
    if isinstance(body, ApiResponse):
        return body
    version = _as_int(body.get("version"))
    if version is None:
        return error(400, "invalid_request", "version must be an integer.")
    versions = console.state.firmware[pid]
    firmware = versions.get(version)
    if firmware is None:
        return error(404, "not_found", f"Firmware version {version} not found in this product.")
    raw_groups = body.get("groups", [])
    if not isinstance(raw_groups, list) or not all(isinstance(g, str) for g in raw_groups):
        return error(400, "invalid_request", "groups must be an array of group names.")
    unknown = [g for g in raw_groups if g not in console.state.groups[pid]]
    if unknown:
        return error(400, "invalid_request", f"Unknown group(s): {', '.join(unknown)}.")
    product_default = _as_bool(body.get("product_default", not raw_groups))
    if product_default is None:
        return error(400, "invalid_request", "product_default must be true or false.")
    if running_count(console.state, pid, version) == 0:
        return error(400, "invalid_request", NOT_RUNNING.format(version=version))
    for other in list(versions.values()):
        changes: dict[str, object] = {}
        if product_default and other.product_default and other.version != version:
            changes["product_default"] = False
        if raw_groups and set(other.groups) & set(raw_groups) and other.version != version:
            changes["groups"] = tuple(g for g in other.groups if g not in raw_groups)
        if changes:
            versions[other.version] = _replace(other, **changes)
    current = versions[version]
    merged = tuple(dict.fromkeys((*current.groups, *raw_groups)))
    versions[version] = _replace(current, product_default=current.product_default or product_default, groups=merged)
    return ApiResponse(200, {"ok": True, **_firmware_json(console.state, pid, versions[version])})


def _replace(firmware: SimFirmware, **changes: object) -> SimFirmware:
    return replace(firmware, **changes)  # type: ignore[arg-type]


# -- devices -------------------------------------------------------------------------------------


def _update_device(console: SimConsole, call: Call) -> ApiResponse:
    assert call.product is not None
    pid = call.product.id
    device_id = call.params["device_id"].lower()
    members = console.state.devices[pid]
    if device_id not in members:
        return error(404, "not_found", f"Device {device_id} is not in product {pid}.")
    body = _json_body(call)
    if isinstance(body, ApiResponse):
        return body
    changes: dict[str, object] = {}
    if "name" in body:
        name = body["name"]
        if not isinstance(name, str) or not DEVICE_NAME.fullmatch(name):
            return error(400, "invalid_request", "name must be letters, digits, - and _, at most 64 characters.")
        changes["name"] = name
    if "notes" in body:
        notes = body["notes"]
        if notes is not None and (not isinstance(notes, str) or len(notes) > MAX_DESCRIPTION):
            return error(400, "invalid_request", "notes must be text.")
        changes["notes"] = notes
    if "development" in body:
        development = _as_bool(body["development"])
        if development is None:
            return error(400, "invalid_request", "development must be true or false.")
        changes["development"] = development
    if "groups" in body:
        groups = body["groups"]
        if not isinstance(groups, list) or not all(isinstance(g, str) for g in groups):
            return error(400, "invalid_request", "groups must be an array of group names.")
        bad = [g for g in groups if not GROUP_NAME.fullmatch(g)]
        if bad:
            return error(400, "invalid_request", f"Invalid group name(s): {', '.join(bad)}.")
        unknown = [g for g in groups if g not in console.state.groups[pid]]
        if unknown:
            return error(400, "invalid_request", f"Group(s) {', '.join(unknown)} do not exist in this product.")
        changes["groups"] = tuple(dict.fromkeys(groups))
    if "desired_firmware_version" in body:
        raw = body["desired_firmware_version"]
        if raw is None:
            changes["desired_firmware_version"] = None
            changes["flash_requested"] = False
        else:
            version = _as_int(raw)
            if version is None:
                return error(400, "invalid_request", "desired_firmware_version must be an integer or null.")
            if version not in console.state.firmware[pid]:
                return error(400, "invalid_request", f"Firmware version {version} does not exist in this product.")
            changes["desired_firmware_version"] = version
    if "flash" in body:
        flash = _as_bool(body["flash"])
        if flash is None:
            return error(400, "invalid_request", "flash must be true or false.")
        locked = changes.get("desired_firmware_version", members.by_id[device_id].desired_firmware_version)
        changes["flash_requested"] = bool(flash and locked is not None)
    if not changes:
        return error(400, "invalid_request", "Nothing to update.")
    device = members.update(device_id, **changes)
    return ApiResponse(200, _device_json(console.state, pid, device))


# -- the simulator's own door: a device reports what it runs -------------------------------------

# Not a Particle API path (hence outside /v1): a real device tells the cloud at its handshake, a
# simulated one, or a person trying the rollout with `station sim console`, tells it here.
HANDSHAKE_PATH = "/sim/products/{product}/devices/{device_id}/handshake"


def _sim_handshake(console: SimConsole, call: Call) -> ApiResponse:
    """Body ``{"firmware_version": N or null, "online": true}``: the device connects running N."""
    assert call.product is not None
    pid = call.product.id
    device_id = call.params["device_id"].lower()
    if device_id not in console.state.devices[pid]:
        return error(404, "not_found", f"Device {device_id} is not in product {pid}.")
    body = _json_body(call)
    if isinstance(body, ApiResponse):
        return body
    if "firmware_version" not in body:
        return error(400, "invalid_request", "firmware_version is required (an integer, or null for none).")
    raw = body["firmware_version"]
    version = None if raw is None else _as_int(raw)
    if raw is not None and (version is None or not 1 <= version <= MAX_VERSION):
        return error(400, "invalid_request", f"firmware_version must be 1 to {MAX_VERSION}, or null.")
    online = _as_bool(body.get("online", True))
    if online is None:
        return error(400, "invalid_request", "online must be true or false.")
    console.device_handshake(str(pid), device_id, version, online=online)
    device = console.state.devices[pid].by_id[device_id]
    return ApiResponse(200, _device_json(console.state, pid, device))


# -- groups --------------------------------------------------------------------------------------


def _list_groups(console: SimConsole, call: Call) -> ApiResponse:
    assert call.product is not None
    pid = call.product.id
    counts = {name: 0 for name in console.state.groups[pid]}
    for device in console.state.devices[pid]:
        for g in device.groups:
            if g in counts:
                counts[g] += 1
    groups = [
        {"name": g.name, "description": g.description, "color": g.color, "device_count": counts[g.name]}
        for g in console.state.groups[pid].values()
    ]
    return ApiResponse(200, {"groups": groups})


def _create_group(console: SimConsole, call: Call) -> ApiResponse:
    assert call.product is not None
    body = _json_body(call)
    if isinstance(body, ApiResponse):
        return body
    name = body.get("name")
    if not isinstance(name, str) or not GROUP_NAME.fullmatch(name):
        return error(
            400,
            "invalid_request",
            "Group names may contain lowercase letters, numbers, hyphens and underscores, up to 64 characters.",
        )
    groups = console.state.groups[call.product.id]
    if name in groups:
        return error(400, "invalid_request", f"Group {name} already exists.")
    description = body.get("description", "")
    group = SimGroup(name, description if isinstance(description, str) else "")
    groups[name] = group
    return ApiResponse(200, {"ok": True, "group": {"name": group.name, "description": group.description}})


def _get_group(console: SimConsole, call: Call) -> ApiResponse:
    assert call.product is not None
    group = console.state.groups[call.product.id].get(call.params["group"])
    if group is None:
        return error(404, "not_found", f"Group {call.params['group']} not found.")
    return ApiResponse(200, {"group": {"name": group.name, "description": group.description}})


ROLLOUT_ROUTES: tuple[Route, ...] = (
    Route("GET", "/v1/products/{product}/firmware", _list_firmware, scope="firmware:list"),
    Route("POST", "/v1/products/{product}/firmware", _upload_firmware, scope="firmware:create", mutates=True),
    Route("PUT", "/v1/products/{product}/firmware/release", _release_firmware, scope="firmware:release", mutates=True),
    Route("GET", "/v1/products/{product}/firmware/{version}", _get_firmware, scope="firmware:get"),
    Route("GET", "/v1/products/{product}/firmware/{version}/binary", _download_firmware, scope="firmware:get"),
    Route("PUT", "/v1/products/{product}/devices/{device_id}", _update_device, scope="devices:update", mutates=True),
    Route("GET", "/v1/products/{product}/groups", _list_groups, scope="groups:list"),
    Route("POST", "/v1/products/{product}/groups", _create_group, scope="groups:create", mutates=True),
    Route("GET", "/v1/products/{product}/groups/{group}", _get_group, scope="groups:get"),
    # device_handshake saves the state file itself.
    Route("POST", HANDSHAKE_PATH, _sim_handshake, scope="devices:get"),
)
