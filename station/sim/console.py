"""A simulated Particle cloud console: the product device endpoints with their documented behaviour.

Bearer-token auth with scopes and products, import results (malformed ID or wrong platform ->
invalid, claimed outside the team -> nonmember, protected -> protected, already in the product ->
existing), paged listing, ``{error, error_description}`` bodies, a sliding-window rate limit that
answers 429 (with or without Retry-After), and fault injection. Endpoints live in one route table
(``ROUTES``) so later work adds rows, not branches: the rollout endpoints (product firmware, device
update, groups) are console_rollout.py's rows. HTTP is in console_http.py, state in console_state.py,
what the handlers share in console_api.py. ``device_handshake`` is how a simulated device reports
the product firmware it runs.

Faults, counted in requests received (``KIND[@N]`` as in station.sim.faults):
``error-status`` answers 503 without doing anything; ``disconnect`` does the work, then drops the
connection without an answer (the cloud acted, the station never heard); ``stall`` answers late, by
``stall_seconds``; ``corrupt-reply`` does the work and answers 200 with a body that is not JSON.
"""

from __future__ import annotations

import json
import math
import threading
import time
from collections import Counter, deque
from collections.abc import Callable, Iterable, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from firmware_tools.errors import FirmwareError
from station.sim.console_api import (
    Call,
    Form,
    FormError,
    Handler,
    Route,
    SimToken,
    error,
    parse_form,
    split_identifiers,
    truthy,
)
from station.sim.console_http import ApiRequest, ApiResponse, Reply
from station.sim.console_rollout import ROLLOUT_ROUTES, targeted_version
from station.sim.console_state import DEVICE_ID, ConsoleState, SimDevice, SimProduct
from station.sim.faults import FaultKind, parse_faults

DEFAULT_PER_PAGE = 25
MAX_PER_PAGE = 100
DOCUMENTED_RATE_LIMIT = 10_000
DOCUMENTED_RATE_WINDOW = 300.0


# -- tokens, limits, faults ---------------------------------------------------------------------


@dataclass(frozen=True)
class RateLimit:
    """At most ``limit`` admitted requests per ``window`` seconds per client address."""

    limit: int = DOCUMENTED_RATE_LIMIT
    window: float = DOCUMENTED_RATE_WINDOW
    retry_after: bool = True  # send Retry-After; the real API's headers are undocumented


@dataclass
class _PendingFault:
    kind: FaultKind
    at: int | None  # the request number it strikes from; None = the next request
    times: int  # how many requests it still strikes


class _Faults:
    """Faults still to fire, in the order they were injected."""

    def __init__(self) -> None:
        self._pending: list[_PendingFault] = []

    def add(self, kind: FaultKind, at: int | None, times: int) -> None:
        self._pending.append(_PendingFault(kind, at, times))

    def take(self, request_no: int) -> FaultKind | None:
        for fault in self._pending:
            if fault.at is None or fault.at <= request_no:
                fault.times -= 1
                if fault.times <= 0:
                    self._pending.remove(fault)
                return fault.kind
        return None

    def clear(self) -> None:
        self._pending.clear()


@dataclass(frozen=True)
class ConsoleStats:
    """Counters a test or benchmark reads after a run."""

    requests: int
    by_status: Mapping[int, int]
    rate_limited: int
    dropped: int
    faults: int
    import_requests: int
    ids_received: int
    added: Mapping[str, int]  # device ID -> times it was added to a product (once, if all is well)


# -- the console --------------------------------------------------------------------------------


class SimConsole:
    """The console's behaviour without sockets: ``handle(request) -> Reply``. Thread-safe."""

    def __init__(
        self,
        state: ConsoleState | None = None,
        *,
        tokens: Iterable[SimToken] = (),
        rate_limit: RateLimit | None = None,
        state_file: Path | None = None,
        max_import: int | None = None,
        latency: float = 0.0,
        stall_seconds: float = 30.0,
        routes: Iterable[Route] | None = None,
        clock: Callable[[], float] = time.monotonic,
        wall_clock: Callable[[], float] = time.time,
    ) -> None:
        self.state = state or ConsoleState()
        self._tokens = {t.value: t for t in tokens}
        self.rate_limit = rate_limit or RateLimit()
        self.state_file = state_file
        self.max_import = max_import  # None: no per-request cap (none is documented)
        self.latency = latency
        self.stall_seconds = stall_seconds
        self.routes = tuple(routes) if routes is not None else ROUTES
        self._clock = clock
        self._wall = wall_clock
        self.lock = threading.RLock()
        self._faults = _Faults()
        self._offline = False
        self._admitted: dict[str, deque[float]] = {}
        self._requests = 0
        self._by_status: Counter[int] = Counter()
        self._rate_limited = 0
        self._dropped = 0
        self._fault_count = 0
        self._import_requests = 0
        self._ids_received = 0
        self._added: Counter[str] = Counter()

    @classmethod
    def with_product(
        cls,
        product_id: int,
        token: str,
        *,
        slug: str | None = None,
        platform_id: int | None = None,
        state_file: Path | None = None,
        **options: Any,
    ) -> SimConsole:
        """A console with one product (loaded from ``state_file`` when it exists) and one user token."""
        state = ConsoleState.load(state_file) if state_file is not None and state_file.exists() else ConsoleState()
        if product_id not in state.products:
            state.add_product(SimProduct(product_id, slug or f"product-{product_id}", platform_id=platform_id))
        return cls(state, tokens=[SimToken(token)], state_file=state_file, **options)

    # -- control, for tests and the CLI --------------------------------------------------------

    def add_token(self, token: SimToken) -> None:
        with self.lock:
            self._tokens[token.value] = token

    def revoke_token(self, value: str) -> None:
        with self.lock:
            self._tokens.pop(value, None)

    def inject(self, kind: FaultKind, *, at: int | None = None, times: int = 1) -> None:
        """Make request number ``at`` (or the next one) and ``times - 1`` after it fail as ``kind``."""
        with self.lock:
            self._faults.add(kind, at, times)

    def inject_spec(self, spec: str) -> None:
        """Faults written as for the other simulators: ``"error-status@3,disconnect@5,stall"``."""
        for fault in parse_faults(spec):
            self.inject(fault.kind, at=fault.at)

    def clear_faults(self) -> None:
        with self.lock:
            self._faults.clear()

    def set_offline(self, offline: bool) -> None:
        """While offline every request is dropped unanswered, as if the factory's uplink were down."""
        with self.lock:
            self._offline = offline

    def stats(self) -> ConsoleStats:
        with self.lock:
            return ConsoleStats(
                requests=self._requests,
                by_status=dict(self._by_status),
                rate_limited=self._rate_limited,
                dropped=self._dropped,
                faults=self._fault_count,
                import_requests=self._import_requests,
                ids_received=self._ids_received,
                added=dict(self._added),
            )

    def product_device_ids(self, id_or_slug: str) -> list[str]:
        with self.lock:
            product = self.state.find_product(id_or_slug)
            return [] if product is None else list(self.state.devices[product.id].order)

    def device_handshake(
        self, product: str, device_id: str, firmware_version: int | None, *, online: bool = True
    ) -> int | None:
        """A device of ``product`` connects and reports the product firmware version it runs.

        This is how a simulated board flashed through the station tells the console what it runs
        (the real device sends its PRODUCT_VERSION when it handshakes). Returns the version the cloud
        targets it with now (documented precedence), None for none. KeyError: not in the product.
        """
        with self.lock:
            found = self.state.find_product(product)
            if found is None:
                raise KeyError(f"no product {product!r}")
            members = self.state.devices[found.id]
            key = device_id.lower()
            if key not in members:
                raise KeyError(f"device {device_id} is not in product {found.id}")
            device = members.by_id[key]
            flashed = device.flash_requested and firmware_version == device.desired_firmware_version
            device = members.update(
                key,
                firmware_version=firmware_version,
                online=online,
                last_heard=self.now(),
                flash_requested=device.flash_requested and not flashed,
            )
            if self.state_file is not None:
                self.state.save(self.state_file)
            return targeted_version(self.state, found.id, device)

    def product_device(self, product: str, device_id: str) -> SimDevice | None:
        """The console's record of one device (None: not in the product)."""
        with self.lock:
            found = self.state.find_product(product)
            if found is None:
                return None
            return self.state.devices[found.id].by_id.get(device_id.lower())

    # -- requests ------------------------------------------------------------------------------

    def handle(self, request: ApiRequest) -> Reply:
        with self.lock:
            self._requests += 1
            number = self._requests
            if self._offline:
                self._dropped += 1
                return Reply(None)
            limited = self._check_rate(request.client)
            if limited is not None:
                self._rate_limited += 1
                return self._answer(limited)
            fault = self._faults.take(number)
            if fault is not None:
                self._fault_count += 1
            if fault is FaultKind.ERROR_STATUS:
                return self._answer(error(503, "service_unavailable", "The service is temporarily unavailable."))
            response = self._route(request)
            if fault is FaultKind.DISCONNECT:
                self._dropped += 1
                return Reply(None, delay=self.latency)
            if fault is FaultKind.CORRUPT_REPLY:
                response = ApiResponse(200, raw=b'{"updated": 1, "updatedDevi')
            delay = self.latency + (self.stall_seconds if fault is FaultKind.STALL else 0.0)
            return self._answer(response, delay)

    def _answer(self, response: ApiResponse, delay: float = 0.0) -> Reply:
        self._by_status[response.status] += 1
        return Reply(response, delay=delay)

    def _check_rate(self, client: str) -> ApiResponse | None:
        limit = self.rate_limit
        now = self._clock()
        sent = self._admitted.setdefault(client, deque())
        while sent and sent[0] <= now - limit.window:
            sent.popleft()
        if len(sent) >= limit.limit:
            wait = max(1, math.ceil(sent[0] + limit.window - now))
            headers = (("Retry-After", str(wait)),) if limit.retry_after else ()
            return error(429, "rate_limited", "Too many requests; slow down and retry later.", headers)
        sent.append(now)
        return None

    def _route(self, request: ApiRequest) -> ApiResponse:
        allowed: list[str] = []
        for route in self.routes:
            match = route.pattern.fullmatch(request.path)
            if match is None:
                continue
            if route.method != request.method:
                allowed.append(route.method)
                continue
            return self._call(route, request, match.groupdict())
        if allowed:
            return error(405, "method_not_allowed", f"Use one of {', '.join(sorted(set(allowed)))}.")
        return error(404, "not_found", f"No such endpoint: {request.path}")

    def _call(self, route: Route, request: ApiRequest, params: dict[str, str]) -> ApiResponse:
        token = self._authenticate(request)
        if token is None:
            return error(401, "invalid_token", "The access token provided is invalid.")
        if not token.allows_scope(route.scope):
            return error(403, "forbidden", f"The access token is missing the {route.scope} scope.")
        product = None
        if "product" in params:
            product = self.state.find_product(params["product"])
            if product is None:
                return error(404, "not_found", f"Product {params['product']} not found.")
            if not token.allows_product(product.id):
                return error(403, "forbidden", f"The access token may not access product {product.id}.")
        response = route.handler(self, Call(request, params, token, product))
        if route.mutates and self.state_file is not None and response.status < 300:
            try:
                self.state.save(self.state_file)
            except FirmwareError as exc:
                return error(500, "server_error", f"the console could not save its state: {exc}")
        return response

    def _authenticate(self, request: ApiRequest) -> SimToken | None:
        header = request.headers.get("authorization", "")
        scheme, _, value = header.partition(" ")
        if scheme.lower() == "bearer" and value.strip():
            return self._tokens.get(value.strip())
        # Deprecated but still honoured by the API: access_token in the query string.
        legacy = request.query.get("access_token")
        return self._tokens.get(legacy) if legacy else None

    # -- endpoint helpers used by the route handlers -------------------------------------------

    def now(self) -> float:
        return self._wall()

    def note_import(self, ids_received: int, added: Iterable[str]) -> None:
        self._import_requests += 1
        self._ids_received += ids_received
        self._added.update(added)


# -- route handlers -------------------------------------------------------------------------------


def _import_devices(console: SimConsole, call: Call) -> ApiResponse:
    assert call.product is not None
    try:
        form = parse_form(call.request)
    except FormError as exc:
        return error(400, "invalid_request", str(exc))
    identifiers: list[str] = []
    for name, data in form.files.items():
        if name == "file" or name.startswith("file"):
            identifiers += split_identifiers(data.decode("utf-8", errors="replace"))
    if "id" in form.fields:
        identifiers += split_identifiers(form.fields["id"])
    if "ids" in form.fields:
        try:
            listed = json.loads(form.fields["ids"])
        except ValueError:
            listed = None
        if not isinstance(listed, list) or not all(isinstance(i, str) for i in listed):
            return error(400, "invalid_request", "ids must be an array of device IDs")
        identifiers += [i.strip() for i in listed if i.strip()]
    if not identifiers:
        return error(400, "invalid_request", "No device IDs given: send id or a file with one ID per line.")
    if console.max_import is not None and len(identifiers) > console.max_import:
        return error(
            400, "invalid_request", f"Too many devices in one request ({len(identifiers)} > {console.max_import})."
        )
    import_sims = truthy(form.fields.get("import_sims"))
    state = console.state
    product = call.product
    members = state.devices[product.id]
    result: dict[str, list[str]] = {k: [] for k in ("updated", "existing", "nonmember", "invalid", "protected")}
    seen: set[str] = set()
    for raw in identifiers:
        device_id = raw.lower()
        if device_id in seen:
            continue
        seen.add(device_id)
        platform = state.platforms.get(device_id)
        if not DEVICE_ID.fullmatch(device_id) or (
            product.platform_id is not None and platform is not None and platform != product.platform_id
        ):
            result["invalid"].append(raw)
        elif device_id in state.protected:
            result["protected"].append(device_id)
        elif device_id in state.claimed_elsewhere:
            result["nonmember"].append(device_id)
        elif device_id in members:
            result["existing"].append(device_id)
        else:
            members.add(
                SimDevice(
                    id=device_id,
                    product_id=product.id,
                    platform_id=platform if platform is not None else product.platform_id,
                    added_at=console.now(),
                    sim_imported=import_sims,
                )
            )
            result["updated"].append(device_id)
    console.note_import(len(identifiers), result["updated"])
    return ApiResponse(
        200,
        {
            "updated": len(result["updated"]),
            "updatedDeviceIds": result["updated"],
            "existingDeviceIds": result["existing"],
            "nonmemberDeviceIds": result["nonmember"],
            "invalidDeviceIds": result["invalid"],
            "protectedDeviceIds": result["protected"],
        },
    )


def _positive(query: Mapping[str, str], key: str, default: int) -> int | None:
    raw = query.get(key)
    if raw is None or raw == "":
        return default
    return int(raw) if raw.isascii() and raw.isdigit() and int(raw) > 0 else None


def _list_devices(console: SimConsole, call: Call) -> ApiResponse:
    assert call.product is not None
    query = call.request.query
    page = _positive(query, "page", 1)
    per_page = _positive(query, "per_page", DEFAULT_PER_PAGE)
    if page is None or per_page is None:
        return error(400, "invalid_request", "page and per_page must be positive integers")
    per_page = min(per_page, MAX_PER_PAGE)
    members = console.state.devices[call.product.id]
    name_part = query.get("deviceId", "").lower()
    groups = {g for g in query.get("groups", "").split(",") if g}
    start = (page - 1) * per_page
    if name_part or groups:
        matching = [d for d in members if name_part in d.id and (not groups or groups.intersection(d.groups))]
        total, chosen = len(matching), matching[start : start + per_page]
    else:
        total, chosen = len(members), members.page(start, start + per_page)
    return ApiResponse(
        200,
        {
            "devices": [d.to_json() for d in chosen],
            "customers": [],
            "meta": {"page": page, "per_page": per_page, "total_pages": math.ceil(total / per_page), "total": total},
        },
    )


def _get_device(console: SimConsole, call: Call) -> ApiResponse:
    assert call.product is not None
    device_id = call.params["device_id"].lower()
    members = console.state.devices[call.product.id]
    if device_id not in members:
        return error(404, "not_found", f"Device {device_id} is not in product {call.product.id}.")
    return ApiResponse(200, members.by_id[device_id].to_json())


def _remove_device(console: SimConsole, call: Call) -> ApiResponse:
    assert call.product is not None
    device_id = call.params["device_id"].lower()
    if not console.state.devices[call.product.id].remove(device_id):
        return error(404, "not_found", f"Device {device_id} is not in product {call.product.id}.")
    return ApiResponse(200, {"ok": True})


def _get_product(console: SimConsole, call: Call) -> ApiResponse:
    assert call.product is not None
    return ApiResponse(200, {"product": call.product.to_json()})


ROUTES: tuple[Route, ...] = (
    Route("GET", "/v1/products/{product}", _get_product, scope="products:get"),
    Route("POST", "/v1/products/{product}/devices", _import_devices, scope="devices:import", mutates=True),
    Route("GET", "/v1/products/{product}/devices", _list_devices, scope="devices:list"),
    Route("GET", "/v1/products/{product}/devices/{device_id}", _get_device, scope="devices:get"),
    Route("DELETE", "/v1/products/{product}/devices/{device_id}", _remove_device, scope="devices:remove", mutates=True),
    *ROLLOUT_ROUTES,
)

__all__ = [
    "DEFAULT_PER_PAGE",
    "DOCUMENTED_RATE_LIMIT",
    "DOCUMENTED_RATE_WINDOW",
    "MAX_PER_PAGE",
    "ROUTES",
    "Call",
    "ConsoleStats",
    "Form",
    "FormError",
    "Handler",
    "RateLimit",
    "Route",
    "SimConsole",
    "SimToken",
    "error",
    "parse_form",
    "split_identifiers",
]
