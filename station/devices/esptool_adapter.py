"""Every use of esptool's (and esp_pylib's) internals, in one module.

Espressif's semantic-versioning promise covers ``esptool.cmds`` only (esptool-api.md §1). The station
also needs a few things underneath it, and each is kept here, named, and checked by
``internals_problems()`` (tests/station/test_esptool_adapter.py fails with its message when an
esptool release drops one):

* the process-global logger (``esp_pylib.logger.EspLog.instance``) replaced by one that hands each
  thread's output to the device call that caused it (esptool issue 1102: parallel boards mix output);
* ``ESPLoader.WRITE_FLASH_ATTEMPTS`` set to 1 (the line, not esptool, decides whether to rewrite after
  a lost link), ``ESPLoader.trace`` replaced by a hook that keeps the first wire problem, and
  ``flush_input`` called so the SLIP reader picks that hook up;
* ``esptool.loader.HexFormatter`` replaced by a subclass that renders nothing on the station's own
  threads: esptool formats a hex dump of every frame inside an f-string, i.e. even with tracing off
  (about 11 ms per 16 KiB block, all of it holding the GIL 64 boards' threads share);
* ``esptool.cmds.zlib`` replaced by a proxy whose ``compress`` is served from a cache keyed by the
  image's SHA-256 and the level: a gang station writes the same bytes to every board and esptool's
  ``write_flash`` would compress them (level 9, ~0.1-0.5 s of CPU per MiB) once per board;
* ``flash_md5sum`` wrapped per loader so the MD5 that ``write_flash`` checks is recorded (range and
  the digest the board reported) and the device's verify can use it instead of asking again;
* with a chip named by the bundle, the chip class constructed and ``connect(detecting=True)``
  called, then the chip checked with one command (``_connect_as``), ``_post_connect`` called;
* ``esp._port`` closed directly when a link is dropped.

Supported range: esptool >= 5.4.0 (the first release with ``esptool.cmds.connect_esp`` and the
``esp_pylib`` logger; 5.3.1 has neither), < 6.
"""

from __future__ import annotations

import collections
import contextlib
import hashlib
import inspect
import re
import threading
import zlib
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from types import ModuleType
from typing import Any

import esptool
import esptool.cmds
import esptool.loader
from esp_pylib.logger import EspLog, EspLogBase
from esptool.util import FatalError

MIN_ESPTOOL = (5, 4, 0)
MAX_ESPTOOL_MAJOR = 5
ROM_BAUD = int(esptool.loader.ESPLoader.ESP_ROM_BAUD)
# esptool's own default (esptool/loader.py: cfg connect_attempts, 7).
DEFAULT_CONNECT_ATTEMPTS = int(esptool.loader.DEFAULT_CONNECT_ATTEMPTS)
_TRANSCRIPT_LINES = 200
WIRE_PROBLEMS = (
    "No serial data received",
    "Serial data stream stopped",
    "Packet content transfer stopped",
    "Read invalid data",
)


# ---- esptool's output, per thread ---------------------------------------------------------------


class Transfer:
    """The write in progress on one thread: where its progress goes and how far it got."""

    _WRITING_AT = re.compile(r"0x([0-9a-fA-F]+)")

    def __init__(self, size: int, address: int, block_size: int, report: Callable[[int], None]) -> None:
        self.size = size
        self.block_size = block_size
        self.report = report
        self.blocks_done = 0
        self.address = address  # next flash address to be written
        self.reported = 0

    def update(self, current: int, total: int, prefix: str) -> None:
        if total <= 0:
            return
        self.blocks_done = -(-current // self.block_size)
        found = self._WRITING_AT.search(prefix)
        if found:
            self.address = int(found.group(1), 16)
        # esptool counts bytes on the wire (compressed); report bytes of the image instead.
        done = min(self.size, current * self.size // total)
        if done != self.reported:
            self.reported = done
            self.report(done)


class Sink:
    """Everything esptool says on one thread during one device call."""

    def __init__(self) -> None:
        self.lines: collections.deque[str] = collections.deque(maxlen=_TRANSCRIPT_LINES)
        self._partial = ""
        self.transfer: Transfer | None = None
        # esptool retries a failed block on a reader it already broke, so its final error
        # ("No more data to read") hides the cause; the first wire-level problem is kept here.
        self.wire_problem: str | None = None

    def trace(self, message: str, newline: bool = False) -> None:
        """Installed as the loader's trace hook: keeps the first sign of trouble on the wire."""
        if self.wire_problem is None and message.startswith(WIRE_PROBLEMS):
            self.wire_problem = message

    def text(self, text: str) -> None:
        parts = (self._partial + text).split("\n")
        self._partial = parts.pop()
        self.lines.extend(line for line in parts if line.strip())

    def transcript(self) -> list[str]:
        return [*self.lines, *([self._partial] if self._partial.strip() else [])]


_local = threading.local()


def _current_sink() -> Sink | None:
    return getattr(_local, "sink", None)


class _ThreadDispatchLogger(EspLogBase):
    """esptool's logger, replaced: a thread that registered a sink gets its own output, others fall back."""

    def __init__(self, fallback: EspLogBase | None) -> None:
        self._fallback = fallback

    def _say(self, method: str, args: tuple[Any, ...], kwargs: dict[str, Any], prefix: str = "") -> None:
        sink = _current_sink()
        if sink is not None:
            sep = str(kwargs.get("sep", " "))
            end = str(kwargs.get("end", "\n"))
            sink.text(prefix + sep.join(str(a) for a in args) + end)
        elif self._fallback is not None:
            getattr(self._fallback, method)(*args, **kwargs)

    def print(self, *args: Any, **kwargs: Any) -> None:
        self._say("print", args, kwargs)

    def note(self, *args: Any) -> None:
        self._say("note", args, {}, "Note: ")

    def hint(self, *args: Any) -> None:
        self._say("hint", args, {}, "Hint: ")

    def debug(self, *args: Any) -> None:
        self._say("debug", args, {})

    def warn(self, *args: Any, suggestion: str | None = None) -> None:
        self._say("warn", args, {} if suggestion is None else {"suggestion": suggestion}, "Warning: ")

    def err(self, *args: Any, suggestion: str | None = None) -> None:
        self._say("err", args, {} if suggestion is None else {"suggestion": suggestion}, "Error: ")

    # esptool still calls the legacy names.
    def warning(self, message: str, suggestion: str | None = None) -> None:
        self.warn(message, suggestion=suggestion)

    def error(self, message: str, suggestion: str | None = None) -> None:
        self.err(message, suggestion=suggestion)

    def stage(self, finish: bool = False) -> None:
        if _current_sink() is None and self._fallback is not None:
            self._fallback.stage(finish=finish)

    def set_verbosity(self, mode: int | str) -> None:
        if self._fallback is not None:
            self._fallback.set_verbosity(mode)

    def progress_bar(
        self,
        cur_iter: int,
        total_iters: int,
        prefix: str = "",
        suffix: str = "",
        bar_length: int = 30,
    ) -> None:
        sink = _current_sink()
        if sink is None:
            if self._fallback is not None:
                self._fallback.progress_bar(cur_iter, total_iters, prefix, suffix, bar_length)
            return
        if sink.transfer is not None:
            sink.transfer.update(cur_iter, total_iters, prefix)

    def counter_line(self, prefix: str, suffix: str, *, final: bool = False) -> None:
        if _current_sink() is None and self._fallback is not None:
            self._fallback.counter_line(prefix, suffix, final=final)


# ---- trace strings ------------------------------------------------------------------------------

_OriginalHex: type = esptool.loader.HexFormatter


class _QuietHexFormatter(_OriginalHex):  # type: ignore[misc]
    """esptool's HexFormatter, rendering nothing on a thread running a station device call.

    esptool passes ``f"... {HexFormatter(data)}"`` to ``trace``: the f-string formats the dump before
    ``trace`` can see that tracing is off. The station's loaders never trace (their hook only looks
    at the fixed text before the dump), so on their threads the dump is an empty string.
    """

    def __format__(self, spec: str) -> str:
        if _current_sink() is not None:
            return ""
        return str(super().__format__(spec))

    def __str__(self) -> str:
        if _current_sink() is not None:
            return ""
        return str(super().__str__())


# ---- compressed once per image ------------------------------------------------------------------


@dataclass
class _Compressed:
    ready: threading.Event
    data: bytes = b""


class CompressionCache:
    """zlib output by (SHA-256 of the input, level), computed once even when 64 threads ask at once.

    Bounded by total compressed bytes; the least recently used entries go first.
    """

    def __init__(self, max_bytes: int = 64 * 1024 * 1024) -> None:
        self.max_bytes = max_bytes
        self._lock = threading.Lock()
        self._entries: collections.OrderedDict[tuple[str, int], _Compressed] = collections.OrderedDict()
        self.compressions = 0  # how many times zlib really ran (tests and benchmarks read it)
        self.hits = 0

    def compress(self, data: bytes, level: int) -> bytes:
        key = (hashlib.sha256(data).hexdigest(), level)
        with self._lock:
            entry = self._entries.get(key)
            owner = entry is None
            if entry is None:
                entry = _Compressed(threading.Event())
                self._entries[key] = entry
                self.compressions += 1
            else:
                self._entries.move_to_end(key)
                self.hits += 1
        if owner:
            try:
                entry.data = zlib.compress(data, level)
            except BaseException:
                with self._lock:
                    self._entries.pop(key, None)
                entry.ready.set()
                raise
            entry.ready.set()
            self._trim()
            return entry.data
        entry.ready.wait()
        if not entry.data and data:
            return zlib.compress(data, level)  # the owner failed; do it here
        return entry.data

    def _trim(self) -> None:
        with self._lock:
            total = sum(len(e.data) for e in self._entries.values())
            while total > self.max_bytes and len(self._entries) > 1:
                _, dropped = self._entries.popitem(last=False)
                total -= len(dropped.data)

    def clear(self) -> None:
        with self._lock:
            self._entries.clear()
            self.compressions = 0
            self.hits = 0


COMPRESSION_CACHE = CompressionCache()
# esptool's write_flash: zlib.compress(image, 9) of the image padded with 0xFF to 4 bytes.
ESPTOOL_ZLIB_LEVEL = 9


def precompress(images: Sequence[bytes]) -> threading.Thread:
    """Start compressing ``images`` the way esptool's write_flash will (stub or ROM with compression,
    at a sector-aligned address), in a thread: zlib releases the GIL, so this runs while the board
    connects at 115200 and the write then finds it in the cache."""

    def work() -> None:
        for data in images:
            padded = bytes(data) + b"\xff" * (-len(data) % 4)
            COMPRESSION_CACHE.compress(padded, ESPTOOL_ZLIB_LEVEL)

    thread = threading.Thread(target=work, name="esp-precompress", daemon=True)
    thread.start()
    return thread


class _CachedZlib(ModuleType):
    """Stands in for ``zlib`` inside ``esptool.cmds``: ``compress`` from the cache, the rest as zlib."""

    def __init__(self, real: ModuleType, cache: CompressionCache) -> None:
        super().__init__("zlib")
        self._real = real
        self._cache = cache

    def compress(self, data: bytes, level: int = -1, wbits: int = 15) -> bytes:
        if wbits != 15 or _current_sink() is None:
            return bytes(self._real.compress(data, level, wbits))
        return self._cache.compress(bytes(data), level)

    def __getattr__(self, name: str) -> Any:
        return getattr(self._real, name)


# ---- installing ---------------------------------------------------------------------------------

_INSTALL_LOCK = threading.Lock()


def install() -> None:
    """Put the logger, the quiet hex formatter and the compression cache in place (idempotent)."""
    with _INSTALL_LOCK:
        if not isinstance(EspLog.instance, _ThreadDispatchLogger):
            EspLog.instance = _ThreadDispatchLogger(EspLog.instance)
        if esptool.loader.HexFormatter is _OriginalHex:
            esptool.loader.HexFormatter = _QuietHexFormatter
        if not isinstance(esptool.cmds.zlib, _CachedZlib):
            esptool.cmds.zlib = _CachedZlib(esptool.cmds.zlib, COMPRESSION_CACHE)


@contextlib.contextmanager
def capture(sink: Sink) -> Iterator[Sink]:
    """Run esptool with this thread's output going to ``sink`` (and no trace strings built)."""
    install()
    previous = _current_sink()
    _local.sink = sink
    try:
        yield sink
    finally:
        _local.sink = previous


# ---- one loader ---------------------------------------------------------------------------------


@dataclass(frozen=True)
class Md5Check:
    """An SPI_FLASH_MD5 the board answered: the range and the digest it reported."""

    address: int
    size: int
    digest: str

    def covers(self, address: int, data: bytes) -> bool:
        """True when this range holds exactly ``data`` at ``address``, padded with 0xFF as esptool pads
        (start moved down to a sector for the ROM, end to 4 bytes): the digest is compared here."""
        before = address - self.address
        after = self.address + self.size - (address + len(data))
        if before < 0 or after < 0 or before + after > 2 * 0x1000:
            return False
        return hashlib.md5(b"\xff" * before + data + b"\xff" * after).hexdigest() == self.digest


class Loader:
    """A connected esptool loader with the station's instrumentation; ``esp`` is esptool's object."""

    def __init__(self, esp: Any, sink: Sink) -> None:
        self.esp = esp
        self.sink = sink
        self.md5_checks: list[Md5Check] = []
        self._instrument()

    def _instrument(self) -> None:
        esp = self.esp
        # esptool would quietly reconnect and rewrite after a lost link; the line decides that.
        esp.WRITE_FLASH_ATTEMPTS = 1
        # The SLIP reader takes the trace hook when it is rebuilt, which flush_input does.
        esp.trace = self.sink.trace
        esp.flush_input()
        md5 = esp.flash_md5sum

        def recorded_md5(address: int, size: int) -> str:
            digest = str(md5(address, size))
            self.md5_checks.append(Md5Check(address, size, digest))
            return digest

        esp.flash_md5sum = recorded_md5

    @property
    def chip_name(self) -> str:
        return str(self.esp.CHIP_NAME)

    @property
    def image_chip_id(self) -> int:
        return int(self.esp.IMAGE_CHIP_ID)

    @property
    def block_size(self) -> int:
        return int(self.esp.FLASH_WRITE_SIZE)

    @property
    def secure_download_mode(self) -> bool:
        return bool(self.esp.secure_download_mode)

    def read_mac(self) -> bytes:
        return bytes(self.esp.read_mac("BASE_MAC"))

    def write(self, address: int, data: bytes, *, compress: bool) -> Md5Check | None:
        """esptool's ``write_flash`` for one image; the MD5 it checked (None when it checked none:
        Secure Download Mode, or a loader without MD5)."""
        first = len(self.md5_checks)
        esptool.cmds.write_flash(
            self.esp, [(address, bytes(data))], compress=compress, no_compress=not compress, no_progress=False
        )
        for check in self.md5_checks[first:]:
            if check.covers(address, bytes(data)):
                return check
        return None

    def md5(self, address: int, size: int) -> str:
        return str(self.esp.flash_md5sum(address, size))

    def read_flash(self, address: int, size: int) -> bytes:
        return bytes(self.esp.read_flash(address, size))

    def hard_reset(self) -> None:
        esptool.cmds.reset_chip(self.esp, "hard-reset")

    def close(self) -> None:
        with contextlib.suppress(Exception):
            self.esp._port.close()


def connect(
    port: str,
    *,
    chip: str,
    baud: int,
    before: str,
    connect_attempts: int,
    stub: bool,
    sink: Sink,
    on_loader: Callable[[Any], None] = lambda _esp: None,
) -> Loader:
    """Connect (skipping detection when ``chip`` is named), run the stub, raise the baud, attach flash.

    ``on_loader`` gets esptool's object as soon as there is one, so the caller can close the port
    if a later step fails.
    """
    if chip == "auto":
        esp = esptool.cmds.detect_chip(port, ROM_BAUD, connect_mode=before, connect_attempts=connect_attempts)
    else:
        esp = _connect_as(port, chip, before, connect_attempts)
    on_loader(esp)
    if stub and not esp.IS_STUB and not esp.secure_download_mode:
        esp = esptool.cmds.run_stub(esp)
        on_loader(esp)
    if baud != ROM_BAUD:
        esp.change_baud(baud)
    loader = Loader(esp, sink)
    esptool.cmds.attach_flash(esp)
    return loader


def _connect_as(port: str, chip: str, before: str, attempts: int) -> Any:
    """Connect as the named chip, checking it with one command instead of esptool's three.

    ``connect_esp(chip=...)`` verifies the chip by sending GET_SECURITY_INFO twice before it reads
    the magic register; an ESP32 or ESP8266 ROM refuses that command and esptool drains 0.2 s of
    input after each refusal (esp-serial-protocol.md §5): 0.4 s per board for a chip the bundle
    already names. Here the chip's own way is asked once: the magic register for chips identified by
    magic value, GET_SECURITY_INFO (which also tells Secure Download Mode) for the others. The
    mismatch message is esptool's ("This chip is X, not Y. Wrong chip argument?").
    """
    from esptool.targets import CHIP_DEFS, ROM_LIST
    from esptool.util import UnsupportedCommandError

    cls = CHIP_DEFS.get(chip)
    if cls is None:
        raise FatalError(f"esptool {esptool.__version__} does not know the chip {chip!r}")
    esp = cls(port, ROM_BAUD, False)
    try:
        if esp.serial_port.startswith("rfc2217:"):
            esp.USES_RFC2217 = True
        esp.connect(before, attempts, detecting=True)  # reset and sync only
        found: str | None = None
        if cls.USES_MAGIC_VALUE:
            try:
                magic = esp.read_reg(esp.CHIP_DETECT_MAGIC_REG_ADDR)
            except UnsupportedCommandError:
                # Only an ESP32-S2 in Secure Download Mode refuses register reads.
                found = "ESP32-S2"
                if found == cls.CHIP_NAME:
                    info = esp.get_security_info()
                    esp.secure_download_mode = bool(info["parsed_flags"]["SECURE_DOWNLOAD_ENABLE"])
            else:
                if magic != cls.MAGIC_VALUE:
                    found = next(
                        (c.CHIP_NAME for c in ROM_LIST if c.USES_MAGIC_VALUE and magic == c.MAGIC_VALUE),
                        f"a chip with magic value {magic:#010x}",
                    )
        else:
            try:
                info = esp.get_security_info()
            except FatalError:  # an ESP32 / ESP8266 ROM: it has no chip id to give
                magic = esp.read_reg(esp.CHIP_DETECT_MAGIC_REG_ADDR)
                found = _chip_by(ROM_LIST, lambda c: c.USES_MAGIC_VALUE and magic == c.MAGIC_VALUE)
                found = found or f"a chip with magic value {magic:#010x}"
            else:
                chip_id = info.get("chip_id")
                if chip_id != cls.IMAGE_CHIP_ID:
                    found = _chip_by(ROM_LIST, lambda c: not c.USES_MAGIC_VALUE and chip_id == c.IMAGE_CHIP_ID)
                    found = found or f"a chip with chip id {chip_id}"
                esp.secure_download_mode = bool(info["parsed_flags"]["SECURE_DOWNLOAD_ENABLE"])
        if found is not None and found != cls.CHIP_NAME:
            raise FatalError(f"This chip is {found}, not {cls.CHIP_NAME}. Wrong chip argument?")
        esp._post_connect()
    except BaseException:
        close_port(esp)
        raise
    return esp


def _chip_by(classes: Any, test: Callable[[Any], bool]) -> str | None:
    return next((str(c.CHIP_NAME) for c in classes if test(c)), None)


def close_port(esp: Any) -> None:
    """Close the port of an esptool loader that never became a ``Loader``."""
    with contextlib.suppress(Exception):
        esp._port.close()


# ---- what the station relies on, checked ----------------------------------------------------------


def _version() -> tuple[int, ...]:
    return tuple(int(part) for part in re.findall(r"\d+", str(esptool.__version__))[:3])


def _params(fn: Any) -> set[str]:
    return set(inspect.signature(fn).parameters)


def internals_problems() -> list[str]:
    """What this module relies on that the installed esptool / esp_pylib no longer has (empty: all there)."""
    problems: list[str] = []
    loader_cls = esptool.loader.ESPLoader
    version = _version()
    if not MIN_ESPTOOL <= version < (MAX_ESPTOOL_MAJOR + 1,):
        problems.append(f"esptool {esptool.__version__} is outside the supported range >=5.4.0,<6")
    if not isinstance(getattr(loader_cls, "WRITE_FLASH_ATTEMPTS", None), int):
        problems.append("esptool.loader.ESPLoader.WRITE_FLASH_ATTEMPTS (set to 1 per loader) is gone")
    for name in (
        "trace",
        "flush_input",
        "flash_md5sum",
        "read_mac",
        "change_baud",
        "command",
        "write",
        "read_reg",
        "get_security_info",
        "_post_connect",
    ):
        if not callable(getattr(loader_cls, name, None)):
            problems.append(f"esptool.loader.ESPLoader.{name} is gone")
    init_source = inspect.getsource(loader_cls.__init__)
    for attr in ("self._port", "self.secure_download_mode", "self._slip_reader"):
        if attr not in init_source:
            problems.append(f"ESPLoader.__init__ no longer sets {attr}")
    if "self.trace" not in inspect.getsource(loader_cls.flush_input):
        problems.append("ESPLoader.flush_input no longer hands self.trace to the SLIP reader")
    if not isinstance(_OriginalHex, type):
        problems.append("esptool.loader.HexFormatter is gone")
    for fn in (loader_cls.command, loader_cls.write):
        if "HexFormatter(" not in inspect.getsource(fn):
            problems.append(f"ESPLoader.{fn.__name__} no longer builds HexFormatter: re-check what it formats")
    cmds = esptool.cmds
    real_zlib = cmds.zlib._real if isinstance(cmds.zlib, _CachedZlib) else cmds.zlib
    if real_zlib is not zlib:
        problems.append("esptool.cmds no longer uses the zlib module by that name")
    write_source = inspect.getsource(cmds.write_flash)
    needles = (
        "zlib.compress(image, 9)",
        "pad_to(image,",
        "esp.flash_md5sum(",
        "esp.WRITE_FLASH_ATTEMPTS",
        "secure_download_mode",
    )
    for needle in needles:
        if needle not in write_source:
            problems.append(f"esptool.cmds.write_flash no longer uses {needle.rstrip('(')}")
    wanted = {
        loader_cls.__init__: {"port", "baud", "trace_enabled"},
        loader_cls.connect: {"mode", "attempts", "detecting"},
        cmds.detect_chip: {"port", "baud", "connect_mode", "connect_attempts"},
        cmds.write_flash: {"esp", "addr_data"},
        cmds.run_stub: {"esp"},
        cmds.attach_flash: {"esp"},
        cmds.reset_chip: {"esp", "reset_mode"},
    }
    for fn, names in wanted.items():
        missing = names - _params(fn)
        if missing:
            problems.append(f"esptool's {fn.__qualname__} lost parameter(s) {', '.join(sorted(missing))}")
    if "detecting" not in _params(loader_cls.connect) or "if not detecting" not in inspect.getsource(
        loader_cls.connect
    ):
        problems.append("ESPLoader.connect(detecting=True) no longer skips esptool's own chip check")
    from esptool.targets import CHIP_DEFS

    for key, cls in CHIP_DEFS.items():
        for attr in ("USES_MAGIC_VALUE", "CHIP_NAME", "IMAGE_CHIP_ID", "CHIP_DETECT_MAGIC_REG_ADDR"):
            if not hasattr(cls, attr):
                problems.append(f"esptool.targets.CHIP_DEFS[{key!r}] has no {attr}")
        if getattr(cls, "USES_MAGIC_VALUE", False) and not hasattr(cls, "MAGIC_VALUE"):
            problems.append(f"esptool.targets.CHIP_DEFS[{key!r}] uses a magic value but has no MAGIC_VALUE")
    if not hasattr(EspLog, "instance"):
        problems.append("esp_pylib.logger.EspLog.instance (the process-global logger) is gone")
    abstract = set(getattr(EspLogBase, "__abstractmethods__", ()))
    unimplemented = sorted(abstract - set(vars(_ThreadDispatchLogger)))
    if unimplemented:
        problems.append(f"esp_pylib.logger.EspLogBase has new abstract method(s): {', '.join(unimplemented)}")
    if not issubclass(getattr(esptool.util, "FatalError", object), Exception):
        problems.append("esptool.util.FatalError is gone")
    return problems


__all__ = [
    "COMPRESSION_CACHE",
    "DEFAULT_CONNECT_ATTEMPTS",
    "ROM_BAUD",
    "CompressionCache",
    "FatalError",
    "Loader",
    "Md5Check",
    "Sink",
    "Transfer",
    "capture",
    "close_port",
    "connect",
    "install",
    "internals_problems",
    "precompress",
]
