"""A product app's source: render the blinky template, and read its PRODUCT_ID / PRODUCT_VERSION macros.

The console refuses an upload whose version differs from the one compiled in, so the developer's
last check before a release is that the macros in the source are what the binary carries.
"""

from __future__ import annotations

import os
import re
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

from firmware_tools.errors import FirmwareError, FormatError

SOURCE_SUFFIXES = frozenset({".c", ".cc", ".cpp", ".cxx", ".h", ".hh", ".hpp", ".ino"})
# Build output and vendored libraries hold other apps' macros (examples), never this app's.
SKIPPED_DIRS = frozenset({"lib", "target", "build", "node_modules"})
MAX_SOURCE_BYTES = 4 * 1024 * 1024

_COMMENTS = re.compile(r"//[^\n]*|/\*.*?\*/", re.DOTALL)
_MACRO = re.compile(r"\b(PRODUCT_ID|PRODUCT_VERSION)\s*\(\s*(0[xX][0-9a-fA-F]+|\d+)\s*\)")
_PLACEHOLDER = re.compile(r"\{\{(\w+)\}\}")


@dataclass(frozen=True)
class MacroUse:
    value: int
    file: str
    line: int


@dataclass(frozen=True)
class SourceMacros:
    product_id: MacroUse | None
    product_version: MacroUse | None


def template_dir(name: str = "blinky") -> Path:
    """The folder of a project template: BENCHFLASH_TEMPLATES, else ``templates/`` beside the packages."""
    root = os.environ.get("BENCHFLASH_TEMPLATES")
    base = Path(root) if root else Path(__file__).resolve().parents[1] / "templates"
    path = base / name
    if not path.is_dir():
        raise FirmwareError(
            f"template {name!r} not found at {path}",
            hint="set BENCHFLASH_TEMPLATES to the folder holding benchflash's templates/",
        )
    return path


def render_template(source: Path, dest: Path, values: Mapping[str, str]) -> list[Path]:
    """Copy ``source`` to ``dest`` replacing ``{{key}}`` placeholders; refuses a non-empty ``dest``."""
    if dest.exists() and any(dest.iterdir()):
        raise FirmwareError("folder exists and is not empty", file=str(dest), hint="choose a new folder")
    written: list[Path] = []
    for src in sorted(p for p in source.rglob("*") if p.is_file()):
        rel = src.relative_to(source)
        text = src.read_text(encoding="utf-8")
        missing = sorted(set(_PLACEHOLDER.findall(text)) - set(values))
        if missing:
            raise FirmwareError(f"template placeholders without a value: {', '.join(missing)}", file=str(src))
        out = dest / rel
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(_PLACEHOLDER.sub(lambda m: values[m.group(1)], text), encoding="utf-8")
        written.append(out)
    return written


def product_id_block(platform: str, product_id: int) -> str:
    """What a new app says in place of PRODUCT_ID: every platform ``fwtool new`` offers runs Device OS >= 4."""
    return (
        f"// No PRODUCT_ID: {platform} runs Device OS 4.0 or later, where it is a compile error. The device\n"
        f"// joins product {product_id} by being imported into its device list in the console (do that\n"
        "// before it first connects); the binary's product id field holds the platform id."
    )


def _source_files(project: Path) -> list[Path]:
    files: list[Path] = []
    for folder, dirs, names in os.walk(project):
        dirs[:] = sorted(d for d in dirs if d not in SKIPPED_DIRS and not d.startswith("."))
        files.extend(Path(folder) / n for n in sorted(names) if Path(n).suffix in SOURCE_SUFFIXES)
    return files


def _strip_comments(text: str) -> str:
    # Keep line numbers: replace each comment by as many newlines as it spanned.
    return _COMMENTS.sub(lambda m: "\n" * m.group(0).count("\n"), text)


def find_product_macros(project: Path) -> SourceMacros:
    """The PRODUCT_ID and PRODUCT_VERSION an app's source declares (comments ignored)."""
    if not project.is_dir():
        raise FirmwareError("not a folder", file=str(project))
    found: dict[str, MacroUse] = {}
    for path in _source_files(project):
        if path.stat().st_size > MAX_SOURCE_BYTES:
            continue
        text = _strip_comments(path.read_text(encoding="utf-8", errors="replace"))
        for match in _MACRO.finditer(text):
            name = match.group(1)
            use = MacroUse(int(match.group(2), 0), str(path), text.count("\n", 0, match.start()) + 1)
            earlier = found.get(name)
            if earlier is not None and earlier.value != use.value:
                raise FormatError(
                    f"{name} is declared twice with different values: {earlier.value} at "
                    f"{earlier.file}:{earlier.line} and {use.value} at {use.file}:{use.line}",
                    hint="keep one declaration",
                )
            found.setdefault(name, use)
    return SourceMacros(found.get("PRODUCT_ID"), found.get("PRODUCT_VERSION"))
