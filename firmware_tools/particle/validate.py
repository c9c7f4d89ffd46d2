"""Named checks on a module, each with a verdict and a reason: integrity, layout, identity, expectations."""

from __future__ import annotations

from firmware_tools.checks import Check, Expectations, ValidationReport
from firmware_tools.particle.constants import PLATFORMS, platform_name
from firmware_tools.particle.layout import CRC, SUFFIX_BASE_SIZE
from firmware_tools.particle.model import (
    Dependency,
    DependencyExtension,
    ModuleFunction,
    ParticleModule,
)
from firmware_tools.particle.parse import parse_module


def validate_module(data: bytes, expect: Expectations, *, name: str | None = None) -> ValidationReport:
    """Parse ``data`` (FormatError if unusable) and run every check; expectations only where given."""
    return ValidationReport(checks=tuple(module_checks(parse_module(data, name=name), expect)))


def module_checks(module: ParticleModule, expect: Expectations, *, prefix: str = "") -> list[Check]:
    """The checks of one parsed module; a combined file is judged module by module."""
    if module.container == "combined":
        return _combined_checks(module, expect, prefix)
    checks = [
        _crc(module),
        _sha(module),
        _size(module),
        _suffix(module),
        _platform(module),
        _function(module),
        _dependencies(module),
    ]
    if module.container == "compressed":
        checks.append(_inner(module))
    checks.extend(_expectations(module, expect, products=True))
    checks = [_named(c, prefix) for c in checks]
    for inner in module.inner:
        checks.extend(module_checks(inner, Expectations(), prefix=f"{prefix}inner."))
    return checks


def _named(check: Check, prefix: str) -> Check:
    return check if not prefix else Check(prefix + check.name, check.ok, check.reason)


def _combined_checks(module: ParticleModule, expect: Expectations, prefix: str) -> list[Check]:
    checks = [_named(_inner(module), prefix)]
    for i, inner in enumerate(module.inner):
        # Product fields belong to the application; a bootloader or radio stack has none to compare.
        own = [c for c in module_checks(inner, Expectations(), prefix=f"{prefix}module[{i}].")]
        wants_product = inner.function == ModuleFunction.USER_PART
        own.extend(_named(c, f"{prefix}module[{i}].") for c in _expectations(inner, expect, products=wants_product))
        checks.extend(own)
    has_app = any(inner.function == ModuleFunction.USER_PART for inner in module.inner)
    if not has_app:
        for label, wanted in (("product-id", expect.product_id), ("product-version", expect.product_version)):
            if wanted is not None:
                reason = f"no application module in the combined file carries a {label.replace('-', ' ')}"
                checks.append(_named(Check(f"expected-{label}", False, reason), prefix))
    return checks


def _inner(module: ParticleModule) -> Check:
    kind = module.container or "plain"
    if module.inner_error is not None:
        return Check("inner", False, f"{kind} module cannot be unpacked: {module.inner_error}")
    if not module.inner:
        return Check("inner", False, f"{kind} module holds no module")
    return Check("inner", True, f"{kind} module holds {len(module.inner)} module(s)")


def _crc(module: ParticleModule) -> Check:
    if module.crc_ok:
        return Check("crc32", True, f"stored CRC-32 {module.crc32_stored:08x} matches")
    return Check(
        "crc32",
        False,
        f"stored CRC-32 {module.crc32_stored:08x} but the data gives {module.crc32_computed:08x}",
    )


def _sha(module: ParticleModule) -> Check:
    if module.sha_file_ok:
        return Check("sha256", True, "stored SHA-256 matches the file")
    if module.sha_payload_only:
        return Check("sha256", True, "stored SHA-256 matches the payload only (written by Device OS create_module.py)")
    return Check(
        "sha256",
        False,
        f"stored SHA-256 {module.suffix.sha256.hex()[:16]}... matches neither the file "
        f"({module.sha256_computed.hex()[:16]}...) nor the payload",
    )


def _size(module: ParticleModule) -> Check:
    p = module.prefix
    if module.size_ok:
        return Check("size", True, f"{module.size} bytes = end {p.end_address:#x} - start {p.start_address:#x} + 4")
    return Check(
        "size",
        False,
        f"file is {module.size} bytes but the prefix ({p.start_address:#x}..{p.end_address:#x}) says "
        f"{module.size_from_prefix}",
    )


def _suffix(module: ParticleModule) -> Check:
    size = module.suffix.suffix_size
    room = module.size - module.prefix_offset - module.prefix_size - CRC.size
    if SUFFIX_BASE_SIZE <= size <= room:
        return Check("suffix", True, f"{size}-byte suffix")
    return Check("suffix", False, f"suffix size {size} is outside {SUFFIX_BASE_SIZE}..{room}")


def _platform(module: ParticleModule) -> Check:
    pid = module.platform_id
    if pid in PLATFORMS:
        return Check("platform", True, f"platform {pid} is {PLATFORMS[pid]}")
    return Check("platform", False, f"platform id {pid} is not a known Particle platform")


def _function(module: ParticleModule) -> Check:
    name = module.function_name
    if name is None or module.function == ModuleFunction.NONE:
        return Check("function", False, f"module function {int(module.function)} is not a known module kind")
    return Check("function", True, f"module function {int(module.function)} is {name}")


def _dependency_problem(dep: Dependency, module: ParticleModule) -> str | None:
    if dep.function == 0:
        return None if dep.index == 0 and dep.version == 0 else "an empty slot with a non-zero index or version"
    try:
        ModuleFunction(dep.function)
    except ValueError:
        return f"unknown function {dep.function}"
    if dep.function == int(module.function) and dep.index == module.prefix.index:
        return "the module depends on itself"
    return None


def _dependencies(module: ParticleModule) -> Check:
    deps = [*module.prefix.raw_dependencies]
    deps += [e.dependency for e in module.extensions if isinstance(e, DependencyExtension)]
    problems = [
        f"dependency {i + 1} ({d.function}/{d.index}@{d.version}): {problem}"
        for i, d in enumerate(deps)
        if (problem := _dependency_problem(d, module)) is not None
    ]
    if problems:
        return Check("dependencies", False, "; ".join(problems))
    used = [d for d in deps if d.function != 0]
    if not used:
        return Check("dependencies", True, "no dependencies")
    return Check(
        "dependencies",
        True,
        ", ".join(f"{ModuleFunction(d.function).name} {d.index} >= {d.version}" for d in used),
    )


def _expectations(module: ParticleModule, expect: Expectations, *, products: bool) -> list[Check]:
    checks: list[Check] = []
    if expect.platform is not None:
        want = platform_name(expect.platform) or str(expect.platform)
        got = module.platform_name or str(module.platform_id)
        checks.append(
            Check(
                "expected-platform",
                module.platform_id == expect.platform,
                f"built for {got}, expected {want}",
            )
        )
    s = module.suffix
    if products and expect.product_id is not None:
        if s.product_id is None:
            checks.append(Check("expected-product-id", False, "the module has no product id field"))
        elif module.product_id_meaning == "platform-id" and s.product_id != expect.product_id:
            checks.append(
                Check(
                    "expected-product-id",
                    False,
                    f"the product id field holds the platform id {s.product_id} (Device OS >= 4 compiles in "
                    f"no product id), expected {expect.product_id}",
                )
            )
        else:
            checks.append(
                Check(
                    "expected-product-id",
                    s.product_id == expect.product_id,
                    f"product id {s.product_id}, expected {expect.product_id}",
                )
            )
    if products and expect.product_version is not None:
        if s.product_version is None:
            checks.append(Check("expected-product-version", False, "the module has no product version field"))
        else:
            checks.append(
                Check(
                    "expected-product-version",
                    s.product_version == expect.product_version,
                    f"product version {s.product_version}, expected {expect.product_version}",
                )
            )
    if expect.chip is not None:
        checks.append(Check("expected-chip", False, f"a Particle module is not an ESP image for {expect.chip}"))
    if expect.version is not None:
        checks.append(
            Check("expected-version", False, f"a Particle module has no app version string (expected {expect.version})")
        )
    return checks
