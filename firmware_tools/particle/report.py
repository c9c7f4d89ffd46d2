"""A parsed module as JSON-ready facts (``fwtool inspect --json``) and as lines a person reads."""

from __future__ import annotations

from firmware_tools.particle.model import (
    AssetDependencyExtension,
    AssetTypeExtension,
    DependencyExtension,
    DynamicLocationExtension,
    Extension,
    HashExtension,
    ModuleFunction,
    NameExtension,
    ParticleModule,
    ProductDataExtension,
    SecurityModeExtension,
    flag_names,
    function_name,
)

FORMAT_NAME = "particle-module"

# particle-cli's wording for each function, so the summary reads like `particle binary inspect`.
_FUNCTION_WORDS = {
    ModuleFunction.NONE: "an unknown module",
    ModuleFunction.RESOURCE: "a reserved module",
    ModuleFunction.BOOTLOADER: "a bootloader",
    ModuleFunction.MONO_FIRMWARE: "a monolithic firmware",
    ModuleFunction.SYSTEM_PART: "a system module",
    ModuleFunction.USER_PART: "an application module",
    ModuleFunction.SETTINGS: "a settings module",
    ModuleFunction.NCP_FIRMWARE: "a network coprocessor (NCP) module",
    ModuleFunction.RADIO_STACK: "a radio stack module",
    ModuleFunction.ASSET: "an asset module",
}


def _function_words(code: int) -> str:
    try:
        return _FUNCTION_WORDS[ModuleFunction(code)]
    except ValueError:
        return f"a module of unknown function {code}"


def sha256_scope(module: ParticleModule) -> str | None:
    """What the stored SHA-256 covers: "file", "payload" (create_module.py) or None (neither)."""
    if module.sha_file_ok:
        return "file"
    if module.sha_payload_only:
        return "payload"
    return None


def extension_json(ext: Extension) -> dict[str, object]:
    out: dict[str, object] = {
        "type": ext.type,
        "type_name": ext.type_name,
        "offset": ext.offset,
        "length": ext.length,
    }
    if isinstance(ext, ProductDataExtension):
        out.update(product_id=ext.product_id, product_version=ext.product_version, product_id32=ext.product_id32)
    elif isinstance(ext, DynamicLocationExtension):
        out.update(
            module_start_address=ext.module_start_address,
            dynalib_load_address=ext.dynalib_load_address,
            dynalib_start_address=ext.dynalib_start_address,
        )
    elif isinstance(ext, DependencyExtension):
        d = ext.dependency
        out.update(function=d.function, index=d.index, version=d.version, target_id=ext.target_id)
    elif isinstance(ext, HashExtension):
        out.update(hash_type=ext.hash_type, hash=ext.hash.hex())
    elif isinstance(ext, NameExtension):
        out.update(name=ext.name)
    elif isinstance(ext, AssetDependencyExtension):
        out.update(hash_type=ext.hash_type, hash=ext.hash.hex(), name=ext.name)
    elif isinstance(ext, SecurityModeExtension):
        out.update(mode=ext.mode, certificate=ext.certificate.hex() or None)
    elif isinstance(ext, AssetTypeExtension):
        out.update(asset_type=ext.asset_type)
    else:
        out.update(data=ext.data.hex())
    return out


def module_json(module: ParticleModule) -> dict[str, object]:
    """Every fact of ``module`` under stable snake_case keys (inner modules under ``modules``)."""
    p, s = module.prefix, module.suffix
    security = module.security_mode
    out: dict[str, object] = {
        "format": FORMAT_NAME,
        "size": module.size,
        "platform_id": p.platform_id,
        "platform": module.platform_name,
        "module_function": module.function_name,
        "module_function_id": int(p.function),
        "module_index": p.index,
        "module_version": p.module_version,
        "flags": flag_names(int(p.flags)),
        "flags_value": int(p.flags),
        "reserved": p.reserved,
        "dependencies": [
            {"function": d.function, "function_name": function_name(d.function), "index": d.index, "version": d.version}
            for d in p.dependencies
        ],
        "start_address": p.start_address,
        "end_address": p.end_address,
        "prefix_offset": module.prefix_offset,
        "prefix_size": module.prefix_size,
        "product_id": s.product_id,
        "product_version": s.product_version,
        "product_id_meaning": module.product_id_meaning,
        "suffix_size": s.suffix_size,
        "suffix_reserved": s.reserved,
        "sha256_stored": s.sha256.hex(),
        "sha256_computed": module.sha256_computed.hex(),
        "sha256_ok": module.sha_file_ok,
        "sha256_scope": sha256_scope(module),
        "crc32_stored": f"{module.crc32_stored:08x}",
        "crc32_computed": f"{module.crc32_computed:08x}",
        "crc32_ok": module.crc_ok,
        "size_from_prefix": module.size_from_prefix,
        "size_ok": module.size_ok,
        "prefix_extensions": [extension_json(e) for e in p.extensions],
        "suffix_extensions": [extension_json(e) for e in s.extensions],
        "asset_name": module.asset_name,
        "asset_hash": None if module.asset_hash is None else module.asset_hash.hex(),
        "asset_dependencies": [
            {"name": a.name, "hash_type": a.hash_type, "hash": a.hash.hex()} for a in module.asset_dependencies
        ],
        "security_mode": None if security is None else security.mode,
    }
    if s.product_id32 is not None:
        out["extended_product_id"] = s.product_id32
    if module.inner:
        out["modules"] = [module_json(m) for m in module.inner]
    if module.inner_error is not None:
        out["inner_error"] = module.inner_error
    return out


def _extension_words(ext: Extension) -> str:
    if isinstance(ext, DynamicLocationExtension):
        return f"{ext.type_name} (start {ext.module_start_address:#x}, dynalib {ext.dynalib_load_address:#x})"
    if isinstance(ext, ProductDataExtension):
        return f"{ext.type_name} (id {ext.product_id32:#010x}, version {ext.product_version})"
    if isinstance(ext, DependencyExtension):
        d = ext.dependency
        return f"{ext.type_name} ({function_name(d.function) or d.function} {d.index} >= {d.version})"
    if isinstance(ext, NameExtension | AssetDependencyExtension):
        return f"{ext.type_name} ({ext.name!r})"
    return f"{ext.type_name} ({ext.length} bytes)"


def _product_line(module: ParticleModule) -> str:
    s = module.suffix
    meaning = module.product_id_meaning
    if meaning == "absent":
        return f"It has no product id / version fields ({s.suffix_size}-byte suffix)"
    if meaning == "unset":
        return f"It is not product firmware (product id {s.product_id}, version {s.product_version}: unset)"
    if meaning == "platform-id":
        return (
            f"It is firmware at product version {s.product_version}; its product id field holds the "
            f"platform id {s.product_id} (Device OS >= 4 sets no product id: the console assigns the product)"
        )
    return f"It is firmware for product id {s.product_id} at version {s.product_version}"


def summary_lines(module: ParticleModule, indent: str = " ") -> list[str]:
    """The facts of ``module`` as sentences, like ``particle binary inspect`` but complete."""
    p, s = module.prefix, module.suffix
    lines: list[str] = []
    if module.crc_ok:
        lines.append(f"CRC is ok ({module.crc32_stored:08x})")
    else:
        lines.append(f"CRC failed (should be {module.crc32_stored:08x} but is {module.crc32_computed:08x})")
    platform = module.platform_name
    lines.append(
        f"Compiled for {platform} (platform {p.platform_id})"
        if platform
        else f"Compiled for unknown platform (ID: {p.platform_id})"
    )
    lines.append(f"This is {_function_words(int(p.function))} number {p.index} at version {p.module_version}")
    flags = flag_names(int(p.flags))
    if flags:
        lines.append("Flags: " + ", ".join(flags))
    if p.reserved:
        lines.append(f"Its platform-specific byte (MCU target) is {p.reserved}")
    size_note = "matches the file" if module.size_ok else f"but the file is {module.size} bytes"
    lines.append(
        f"It spans {p.start_address:#010x}..{p.end_address:#010x} ({module.size_from_prefix} bytes, {size_note}); "
        f"prefix at offset {module.prefix_offset:#x}"
    )
    scope = sha256_scope(module)
    sha_note = {
        "file": "SHA-256 ok",
        "payload": "SHA-256 of the payload only, as create_module.py writes it",
        None: f"SHA-256 mismatch: the file hashes to {module.sha256_computed.hex()}",
    }[scope]
    lines.append(f"It has a UUID of {s.sha256.hex()} ({sha_note})")
    lines.append(_product_line(module))
    if s.product_id32 is not None:
        lines.append(f"Its retired 42-byte suffix holds a 32-bit product id {s.product_id32:#010x}")
    for i, d in enumerate(p.dependencies):
        lead = "It depends on" if i == 0 else "It also depends on"
        lines.append(f"{lead} {_function_words(d.function)} number {d.index} at version {d.version}")
    if module.asset_name is not None:
        digest = module.asset_hash.hex() if module.asset_hash else "?"
        lines.append(f"It is the asset {module.asset_name!r} (SHA-256 {digest})")
    for asset in module.asset_dependencies:
        lines.append(f"It needs the asset {asset.name!r} (SHA-256 {asset.hash.hex()})")
    for where, exts in (("prefix", p.extensions), ("suffix", s.extensions)):
        if exts:
            lines.append(f"{where.capitalize()} extensions: " + ", ".join(_extension_words(e) for e in exts))
    if module.security_mode is not None:
        mode = {0: "none", 1: "protected"}.get(module.security_mode.mode, str(module.security_mode.mode))
        lines.append(f"Security mode: {mode}")
    out = [indent + line for line in lines]
    for i, inner in enumerate(module.inner):
        kind = "Combined module" if module.container == "combined" else "Decompressed module"
        out.append(f"{indent}{kind} {i + 1} of {len(module.inner)}:")
        out.extend(summary_lines(inner, indent + "   "))
    if module.inner_error is not None:
        out.append(f"{indent}Its inner module cannot be read: {module.inner_error}")
    return out
