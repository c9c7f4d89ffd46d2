"""A PNG of a unit label (Pillow, QR code by segno): the same text and payload the ZPL carries, for
the docs and for a bench without a printer."""

from __future__ import annotations

import io

import segno
from PIL import Image, ImageDraw, ImageFont

from station.labels.model import UnitLabel


def render_png(label: UnitLabel, *, scale: int = 4) -> bytes:
    qr = segno.make(label.payload(), error="q", micro=False)
    buffer = io.BytesIO()
    qr.save(buffer, kind="png", scale=scale, border=4)
    code = Image.open(io.BytesIO(buffer.getvalue())).convert("L")
    lines = [
        label.product,
        f"SN {label.serial or '-'}",
        label.device_id,
        f"FW {label.firmware}",
        label.date,
        label.station,
    ]
    font = ImageFont.load_default()
    width = code.width + 16 + max(int(font.getlength(line)) for line in lines) + 16
    height = max(code.height, 16 + 18 * len(lines))
    image = Image.new("L", (width, height), 255)
    image.paste(code, (0, 0))
    draw = ImageDraw.Draw(image)
    for n, line in enumerate(lines):
        draw.text((code.width + 16, 12 + 18 * n), line, fill=0, font=font)
    out = io.BytesIO()
    image.save(out, format="PNG")
    return out.getvalue()
