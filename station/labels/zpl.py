"""ZPL II for Zebra label printers: a template with the unit's fields, escaped so data never becomes a command.

Field data goes through ``^FH_`` (hex escapes): ``^``, ``~``, ``_`` and any non-ASCII byte are
written as ``_XX``, with ``^CI28`` (UTF-8). ``{qr}`` is the QR code's payload, for a
``^BQN,2,N^FDQA,{qr}^FS`` field (QA: error correction Q, automatic data mode).
"""

from __future__ import annotations

import string
from pathlib import Path

from station.errors import InputError
from station.labels.model import UnitLabel

# A 2 x 1.25 inch label at 203 dpi: the QR code on the left, the text on the right.
DEFAULT_TEMPLATE = """^XA
^CI28
^PW406
^LL254
^FO10,10^BQN,2,4^FH_^FDQA,{qr}^FS
^FO150,14^A0N,20,20^FH_^FD{product}^FS
^FO150,40^A0N,20,20^FH_^FDSN {serial}^FS
^FO150,66^A0N,16,16^FH_^FD{device_id}^FS
^FO150,90^A0N,20,20^FH_^FDFW {firmware}^FS
^FO150,116^A0N,20,20^FH_^FD{date}^FS
^FO150,142^A0N,20,20^FH_^FD{station}^FS
^XZ
"""
PLACEHOLDERS = frozenset({"qr", "device_id", "serial", "product", "firmware", "date", "station"})
MAX_TEMPLATE_BYTES = 64 * 1024


def escape_field(text: str) -> str:
    """Text for a ``^FH_`` field: ZPL's command characters and non-ASCII as ``_XX`` hex escapes."""
    out: list[str] = []
    for ch in text:
        if ch in "^~_" or not (32 <= ord(ch) < 127):
            out.extend(f"_{b:02X}" for b in ch.encode("utf-8"))
        else:
            out.append(ch)
    return "".join(out)


def unescape_field(text: str) -> str:
    """The inverse of ``escape_field`` (what a printer does with ``^FH_``)."""
    data = bytearray()
    i = 0
    raw = text.encode("ascii")
    while i < len(raw):
        if raw[i : i + 1] == b"_" and i + 3 <= len(raw):
            data.append(int(raw[i + 1 : i + 3], 16))
            i += 3
        else:
            data.append(raw[i])
            i += 1
    return data.decode("utf-8")


def check_template(text: str, where: str) -> str:
    try:
        names = {name for _, name, _, _ in string.Formatter().parse(text) if name is not None}
    except ValueError as exc:
        raise InputError(f"{where}: not a usable label template: {exc}") from None
    unknown = sorted(names - PLACEHOLDERS)
    if unknown:
        raise InputError(
            f"{where}: unknown placeholder(s) {', '.join(unknown)}",
            hint=f"a template may use {{{'}, {'.join(sorted(PLACEHOLDERS))}}}",
        )
    if "^XA" not in text or "^XZ" not in text:
        raise InputError(f"{where}: a ZPL template starts a label with ^XA and ends it with ^XZ")
    return text


def load_template(path: Path) -> str:
    try:
        data = path.read_bytes()[: MAX_TEMPLATE_BYTES + 1]
    except OSError as exc:
        raise InputError(f"cannot read label template {path}: {exc.strerror}") from None
    if len(data) > MAX_TEMPLATE_BYTES:
        raise InputError(f"label template {path} is larger than {MAX_TEMPLATE_BYTES} bytes")
    return check_template(data.decode("utf-8", errors="strict"), str(path))


def render_zpl(label: UnitLabel, template: str = DEFAULT_TEMPLATE) -> bytes:
    values = {k: escape_field(v) for k, v in label.fields().items()}
    values["qr"] = escape_field(label.payload())
    return template.format(**values).encode("ascii")
