"""Particle listening-mode console: the one-key commands and their answers, parsed as particle-cli does.

``ListeningClient`` writes one command key and collects the reply the way particle-cli's
SerialBatchParser does (everything until 250 ms pass with no new byte). The ``parse_*``
functions apply particle-cli's own regular expressions (src/cmd/serial.js); ``parse_system_info``
reads the ``s`` JSON into typed values.
"""

from __future__ import annotations

import json
import re
import time
from collections.abc import Callable
from dataclasses import dataclass

from station.errors import DeviceError, DeviceTimeout, Reason
from station.protocols.ymodem import ByteStream

# Baud rates whose line-coding change Device OS acts on (system_update.cpp, module-defaults.mk).
DFU_BAUD = 14400
LISTENING_BAUD = 28800
CONSOLE_BAUD = 9600

# particle-cli: SerialBatchParser gap, the default command timeout, and the long ones for i and s.
BATCH_GAP = 0.25
COMMAND_TIMEOUT = 5.0
IDENTIFY_TIMEOUT = 20.0
MODULE_INFO_TIMEOUT = 20.0
# The longest answer we accept: the largest `s` JSON of a Gen3 device is a few KiB.
MAX_REPLY = 64 * 1024

FLASH_PROMPT = "Waiting for the binary file to be sent ... (press 'a' to abort)"
YMODEM_REMOVED = "Serial/YModem flashing is no longer supported"

# particle-cli src/cmd/serial.js, verbatim apart from the ASCII flag: JavaScript's \w is ASCII.
_ID_RE = re.compile(r"Your (core|device) id is\s+(\w+)", re.ASCII)
_ID_KEYED_RE = re.compile(r"\s+([a-fA-F0-9]{24})\s+", re.ASCII)
_IMEI_RE = re.compile(r"IMEI: (\w+)", re.ASCII)
_ICCID_RE = re.compile(r"ICCID: (\w+)", re.ASCII)
_MAC_RE = re.compile(r"([0-9a-fA-F]{2}:){1,5}([0-9a-fA-F]{2})?", re.ASCII)
_VERSION_RE = re.compile(r"system firmware version:\s+([\w.-]+)", re.ASCII)
_CLAIMED_RE = re.compile(r"Device claimed: (\w+)", re.ASCII)
# Manufacturing firmware may print a short MAC; particle-cli restores these USI OUIs.
_USI_OUIS = (("6c", "0b", "84"), ("44", "39", "c4"))

# Platforms whose console answers `m` with a Wi-Fi station MAC: Photon, P1, Argon, P2, M-SoM.
WIFI_PLATFORMS = frozenset({6, 8, 12, 32, 35})

MODULE_FUNCTIONS = {"n": 0, "r": 1, "b": 2, "m": 3, "s": 4, "u": 5, "c": 7, "a": 8, "_": 6}
MODULE_FUNCTION_LETTERS = {code: letter for letter, code in MODULE_FUNCTIONS.items()}
MODULE_STORES = {"m": "main", "b": "backup", "f": "factory", "t": "scratchpad", "_": "unknown"}


@dataclass(frozen=True)
class DeviceIdReply:
    """What ``i`` says: the device ID and, on cellular devices, the modem's IMEI and ICCID."""

    device_id: str
    imei: str | None = None
    iccid: str | None = None


@dataclass(frozen=True)
class ModuleDependency:
    function: int
    index: int
    version: int


@dataclass(frozen=True)
class ModuleReport:
    """One module of the ``s`` JSON."""

    function: int  # module function code (5 = user part)
    index: int
    version: int
    max_size: int
    store: str  # "main", "backup", "factory", "scratchpad", "unknown"
    validity_checked: int
    validity_result: int
    sha256: str | None  # "u": the module's suffix SHA-256, lower-case hex; Device OS gives it for user parts
    platform_id: int | None
    dependencies: tuple[ModuleDependency, ...]

    @property
    def valid(self) -> bool:
        """Every check the device ran passed."""
        return self.validity_checked == self.validity_result


@dataclass(frozen=True)
class SystemInfo:
    """The ``s`` reply: platform, the extra key/values (imei, iccid, sn, ...) and the modules."""

    platform_id: int
    properties: tuple[tuple[str, str], ...]
    modules: tuple[ModuleReport, ...]

    def find(self, function: int, index: int) -> ModuleReport | None:
        """The module in main store with this function and index, if the device reports one."""
        for module in self.modules:
            if module.function == function and module.index == index and module.store == "main":
                return module
        return None


class ReplyError(DeviceError):
    """The device answered a listening-mode command with text its parser cannot read."""

    reason = Reason.PROTOCOL


def parse_device_id(text: str) -> DeviceIdReply | None:
    """particle-cli ``askForDeviceID``: the "Your device id is" form, else a whitespace-bounded 24-hex run."""
    match = _ID_RE.search(text)
    if match:
        return DeviceIdReply(match.group(2))
    keyed = _ID_KEYED_RE.search(text)
    if keyed:
        imei = _IMEI_RE.search(text)
        iccid = _ICCID_RE.search(text)
        return DeviceIdReply(
            keyed.group(1),
            imei.group(1) if imei else None,
            iccid.group(1) if iccid else None,
        )
    return None


def parse_mac(text: str) -> str | None:
    """particle-cli ``getDeviceMacAddress``: first run of hex pairs, lower-cased, short ones padded."""
    match = _MAC_RE.search(text)
    if not match:
        return None
    mac = match.group(0).lower()
    if len(mac) < 17:
        parts = mac.split(":")
        while len(parts) < 6:
            parts.insert(0, "00")
        # Kept as particle-cli has it: a match on the OUI's last byte alone restores the whole OUI.
        for oui in _USI_OUIS:
            if any(parts[i] == oui[i] for i in range(len(oui) - 1, -1, -1)):
                mac = ":".join(list(oui) + parts[len(oui) :])
                break
    return mac


def parse_version(text: str) -> str | None:
    """particle-cli ``askForSystemFirmwareVersion``."""
    match = _VERSION_RE.search(text)
    return match.group(1) if match else None


def parse_claimed(text: str) -> bool | None:
    match = _CLAIMED_RE.search(text)
    return None if match is None else match.group(1) == "yes"


def parse_system_info(text: str) -> SystemInfo:
    """The ``s`` JSON. ReplyError (naming what is wrong) when it is not the shape Device OS writes."""
    start = text.find("{")
    end = text.rfind("}")
    if start < 0 or end < start:
        raise ReplyError("system info reply holds no JSON object")
    try:
        doc = json.loads(text[start : end + 1])
    except ValueError as exc:
        raise ReplyError(f"system info reply is not valid JSON: {exc}") from None
    if not isinstance(doc, dict):
        raise ReplyError("system info reply is not a JSON object")
    platform = doc.get("p")
    modules = doc.get("m")
    if not isinstance(platform, int) or not isinstance(modules, list):
        raise ReplyError('system info reply lacks "p" (platform) or "m" (modules)')
    properties = tuple((k, str(v)) for k, v in doc.items() if k not in ("p", "m") and isinstance(v, str | int))
    return SystemInfo(platform, properties, tuple(_module_report(m, i) for i, m in enumerate(modules)))


def _module_report(raw: object, position: int) -> ModuleReport:
    if not isinstance(raw, dict):
        raise ReplyError(f"system info module {position} is not an object")
    try:
        function = MODULE_FUNCTIONS.get(str(raw.get("f", "_")), 6)
        deps = tuple(
            ModuleDependency(MODULE_FUNCTIONS.get(str(d.get("f", "_")), 6), int(d["n"]), int(d["v"]))
            for d in raw.get("d", [])
            if isinstance(d, dict)
        )
        sha = raw.get("u")
        platform = raw.get("p")
        return ModuleReport(
            function=function,
            index=int(raw["n"]),
            version=int(raw["v"]),
            max_size=int(raw.get("s", 0)),
            store=MODULE_STORES.get(str(raw.get("l", "_")), "unknown"),
            validity_checked=int(raw.get("vc", 0)),
            validity_result=int(raw.get("vv", 0)),
            sha256=sha.lower() if isinstance(sha, str) else None,
            platform_id=platform if isinstance(platform, int) else None,
            dependencies=deps,
        )
    except (KeyError, TypeError, ValueError) as exc:
        raise ReplyError(f"system info module {position} is malformed: {exc}") from None


class ListeningClient:
    """Issues listening-mode commands over a byte stream; every wait is bounded."""

    def __init__(
        self,
        stream: ByteStream,
        *,
        device: str | None = None,
        batch_gap: float = BATCH_GAP,
        removal_wait: float = 0.2,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        self._stream = stream
        self._device = device
        self._gap = batch_gap
        self._removal_wait = removal_wait
        self._clock = clock

    def command(self, key: str, timeout: float = COMMAND_TIMEOUT, complete: Callable[[str], bool] | None = None) -> str:
        """Send one command key; the first burst of reply text (particle-cli's one batch).

        ``complete`` may end the wait early when the text is provably the whole answer (the
        parse is the same; only the 250 ms of silence that would confirm it are saved).
        """
        self.drain()
        self._stream.write(key.encode("ascii"))
        return self.read_batch(timeout, what=f"'{key}'", complete=complete)

    def read_batch(
        self, timeout: float, *, what: str = "the prompt", complete: Callable[[str], bool] | None = None
    ) -> str:
        """Bytes until ``batch_gap`` passes with none; DeviceTimeout if none come within ``timeout``."""
        first = self._stream.read(MAX_REPLY, timeout)
        if not first:
            raise DeviceTimeout(
                f"no answer to {what} within {timeout:g} s",
                device=self._device,
                hint="is the device in listening mode (blinking blue)?",
            )
        reply = bytearray(first)
        deadline = self._clock() + timeout
        while len(reply) < MAX_REPLY and self._clock() < deadline:
            if complete is not None and complete(reply.decode("utf-8", "replace")):
                break
            more = self._stream.read(MAX_REPLY - len(reply), self._gap)
            if not more:
                break
            reply += more
        return reply.decode("utf-8", "replace")

    def drain(self, quiet: float = 0.0) -> bytes:
        """Discard what is already waiting (a previous reply's tail, boot text)."""
        junk = bytearray()
        while len(junk) < MAX_REPLY:
            more = self._stream.read(MAX_REPLY, quiet)
            if not more:
                break
            junk += more
        return bytes(junk)

    def device_id(self, timeout: float = IDENTIFY_TIMEOUT) -> DeviceIdReply:
        text = self.command("i", timeout, _plain_id_complete)
        reply = parse_device_id(text)
        if reply is None:
            raise ReplyError(f"'i' answer holds no device ID: {_excerpt(text)}", device=self._device)
        return reply

    def version(self, timeout: float = COMMAND_TIMEOUT) -> str:
        text = self.command("v", timeout, _version_complete)
        version = parse_version(text)
        if version is None:
            raise ReplyError(f"'v' answer holds no version: {_excerpt(text)}", device=self._device)
        return version

    def mac(self, timeout: float = COMMAND_TIMEOUT) -> str:
        text = self.command("m", timeout, _mac_complete)
        mac = parse_mac(text)
        if mac is None:
            raise ReplyError(f"'m' answer holds no MAC address: {_excerpt(text)}", device=self._device)
        return mac

    def system_info(self, timeout: float = MODULE_INFO_TIMEOUT) -> SystemInfo:
        text = self.command("s", timeout, _json_complete)
        try:
            return parse_system_info(text)
        except ReplyError as exc:
            raise ReplyError(exc.message, device=self._device) from None

    def start_flash(self, timeout: float = 10.0) -> None:
        """``f``, then wait for the prompt (or a "C") as particle-cli does; refuse Device OS >= 6."""
        self.drain()
        self._stream.write(b"f")
        deadline = self._clock() + timeout
        seen = bytearray()
        while True:
            left = deadline - self._clock()
            if left <= 0:
                raise DeviceTimeout(
                    "timed out waiting for initial response from device to 'f'",
                    device=self._device,
                    hint="is the device in listening mode (blinking blue)?",
                )
            chunk = self._stream.read(256, min(left, 0.5))
            if not chunk:
                continue
            if not seen and chunk[0] == 0x43:  # "C": a receiver already asking
                return
            seen += chunk
            text = seen.decode("utf-8", "replace")
            self._refuse_if_removed(seen)
            if any(line.strip("\r") == FLASH_PROMPT for line in text.split("\n")[:-1]):
                # Device OS >= 6 prints the same prompt, then CAN x4 100 ms later: look before sending.
                self._refuse_if_removed(self._stream.read(256, self._removal_wait))
                return
            if len(seen) > MAX_REPLY:
                raise ReplyError(f"'f' answer is not the YModem prompt: {_excerpt(text)}", device=self._device)

    def _refuse_if_removed(self, seen: bytes | bytearray) -> None:
        if YMODEM_REMOVED.encode() in seen or b"\x18\x18\x18\x18" in seen:
            raise DeviceError(
                "the device refuses YModem flashing (Device OS 6 or later)",
                device=self._device,
                reason=Reason.REFUSED,
                hint="flash it over USB DFU instead",
            )


# Answers whose end is certain once seen. The keyed `i` form is not among them: any number of
# key lines may follow "Device ID:", so only the silence tells.
_PLAIN_ID_DONE = re.compile(r"Your (core|device) id is\s+\w+\r\n", re.ASCII)
_VERSION_DONE = re.compile(r"system firmware version:\s+[\w.-]+[^\n]*\n\r\n", re.ASCII)
_MAC_DONE = re.compile(r"MAC address is\r\n[0-9a-fA-F:]+\r\n", re.ASCII)


def _plain_id_complete(text: str) -> bool:
    return _PLAIN_ID_DONE.search(text) is not None


def _version_complete(text: str) -> bool:
    return _VERSION_DONE.search(text) is not None


def _mac_complete(text: str) -> bool:
    return _MAC_DONE.search(text) is not None


def _json_complete(text: str) -> bool:
    """The `s` object is whole: it parses and its CR LF has arrived."""
    if not text.endswith("}\r\n"):
        return False
    try:
        json.loads(text[text.find("{") :].rstrip())
    except ValueError:
        return False
    return True


def _excerpt(text: str, limit: int = 60) -> str:
    flat = text.strip().replace("\r", "\\r").replace("\n", "\\n")
    return repr(flat[:limit] + ("..." if len(flat) > limit else ""))
