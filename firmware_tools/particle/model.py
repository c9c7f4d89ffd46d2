"""Typed values for a parsed Particle module: enums for codes and flags, frozen dataclasses for the parts."""

from __future__ import annotations

import enum
from dataclasses import dataclass

from firmware_tools.particle.constants import DEVICE_OS_4_MODULE_VERSION, platform_name


class ModuleFunction(enum.IntEnum):
    """Prefix byte 14 (Device OS ``module_function_t``)."""

    NONE = 0
    RESOURCE = 1
    BOOTLOADER = 2
    MONO_FIRMWARE = 3
    SYSTEM_PART = 4
    USER_PART = 5
    SETTINGS = 6
    NCP_FIRMWARE = 7
    RADIO_STACK = 8
    ASSET = 9


class ModuleFlags(enum.IntFlag):
    """Prefix byte 9 (Device OS ``module_info_flags_t``)."""

    NONE = 0
    DROP_MODULE_INFO = 0x01
    COMPRESSED = 0x02
    COMBINED = 0x04
    ENCRYPTED = 0x08
    PREFIX_EXTENSIONS = 0x10


KNOWN_FLAGS_MASK = 0x1F


class ExtensionType(enum.IntEnum):
    """Type of a module info TLV (Device OS ``module_info_extension_type``)."""

    END = 0x0000
    PRODUCT_DATA = 0x0001
    DYNAMIC_LOCATION = 0x0002
    DEPENDENCY = 0x0003
    HASH = 0x0010
    NAME = 0x0011
    ASSET_DEPENDENCY = 0x0012
    SECURITY_MODE = 0x0013
    ASSET_TYPE = 0x0014
    INVALID = 0xFFFF


def function_name(code: int) -> str | None:
    """``USER_PART`` for 5; None for a code Device OS does not define."""
    try:
        return ModuleFunction(code).name
    except ValueError:
        return None


def flag_names(flags: int) -> list[str]:
    """Names of the set bits, low to high; unknown bits as ``UNKNOWN_0x80``."""
    names: list[str] = []
    for bit in range(8):
        mask = 1 << bit
        if flags & mask:
            if mask & KNOWN_FLAGS_MASK:
                names.append(ModuleFlags(mask).name or f"UNKNOWN_{mask:#x}")
            else:
                names.append(f"UNKNOWN_{mask:#x}")
    return names


@dataclass(frozen=True)
class Dependency:
    """A module this one needs at ``version`` or later."""

    function: int
    index: int
    version: int

    @property
    def function_name(self) -> str | None:
        return function_name(self.function)


# --- TLV extensions -------------------------------------------------------------------------------


@dataclass(frozen=True)
class Extension:
    """One TLV as stored: ``offset`` of its header in the file, ``length`` including that header."""

    type: int
    offset: int
    length: int
    data: bytes

    @property
    def type_name(self) -> str:
        try:
            return ExtensionType(self.type).name
        except ValueError:
            return f"UNKNOWN_{self.type:#06x}"


@dataclass(frozen=True)
class ProductDataExtension(Extension):
    """PRODUCT_DATA: a 32-bit product id and a 16-bit version; tools read the id's upper half."""

    product_id32: int
    product_id: int
    product_version: int


@dataclass(frozen=True)
class DynamicLocationExtension(Extension):
    module_start_address: int
    dynalib_load_address: int
    dynalib_start_address: int


@dataclass(frozen=True)
class DependencyExtension(Extension):
    dependency: Dependency
    target_id: int


@dataclass(frozen=True)
class HashExtension(Extension):
    hash_type: int
    hash: bytes


@dataclass(frozen=True)
class NameExtension(Extension):
    name: str


@dataclass(frozen=True)
class AssetDependencyExtension(Extension):
    hash_type: int
    hash: bytes
    name: str


@dataclass(frozen=True)
class SecurityModeExtension(Extension):
    mode: int
    certificate: bytes


@dataclass(frozen=True)
class AssetTypeExtension(Extension):
    asset_type: int


# --- prefix, suffix, module ----------------------------------------------------------------------


@dataclass(frozen=True)
class ModulePrefix:
    """``module_info_t``: where the module lives and what it is."""

    start_address: int
    end_address: int
    reserved: int
    flags: ModuleFlags  # unknown bits are kept (IntFlag boundary KEEP)
    module_version: int
    platform_id: int
    function: ModuleFunction | int
    index: int
    dependencies: tuple[Dependency, ...]
    raw_dependencies: tuple[Dependency, Dependency]
    extensions: tuple[Extension, ...]


@dataclass(frozen=True)
class ModuleSuffix:
    """``module_info_suffix_t`` and what precedes it; product fields are None when the suffix lacks them."""

    product_id: int | None
    product_version: int | None
    reserved: int
    sha256: bytes
    suffix_size: int
    extensions: tuple[Extension, ...]
    # The historic 42-byte suffix stored a 32-bit product id; the reference reads only its upper half.
    product_id32: int | None = None


@dataclass(frozen=True)
class AssetRef:
    """An asset an application needs (ASSET_DEPENDENCY), by name and hash."""

    name: str
    hash_type: int
    hash: bytes


@dataclass(frozen=True)
class ParticleModule:
    """Everything a module file states, and what its bytes actually hash to."""

    size: int
    prefix_offset: int
    prefix: ModulePrefix
    prefix_size: int
    suffix: ModuleSuffix
    crc32_stored: int
    crc32_computed: int
    sha256_computed: bytes
    # SHA-256 of the payload alone, as create_module.py stores it; computed only when the whole-file
    # hash does not match (b"" otherwise: it is then never asked for).
    sha256_payload: bytes
    inner: tuple[ParticleModule, ...] = ()
    # Why the inner module(s) of a compressed or combined file could not be read, if so.
    inner_error: str | None = None
    # How ``inner`` was obtained: "combined" (split), "compressed" (inflated) or None (plain module).
    container: str | None = None

    @property
    def crc_ok(self) -> bool:
        return self.crc32_stored == self.crc32_computed

    @property
    def sha_file_ok(self) -> bool:
        """The stored SHA-256 is that of the whole file up to it (the reference encoders' rule)."""
        return self.suffix.sha256 == self.sha256_computed

    @property
    def sha_payload_only(self) -> bool:
        """The stored SHA-256 covers the payload only, as Device OS's create_module.py writes it."""
        return not self.sha_file_ok and self.suffix.sha256 == self.sha256_payload

    @property
    def sha_ok(self) -> bool:
        return self.sha_file_ok or self.sha_payload_only

    @property
    def size_from_prefix(self) -> int:
        return self.prefix.end_address - self.prefix.start_address + 4

    @property
    def size_ok(self) -> bool:
        return self.size == self.size_from_prefix

    @property
    def platform_id(self) -> int:
        return self.prefix.platform_id

    @property
    def platform_name(self) -> str | None:
        return platform_name(self.prefix.platform_id)

    @property
    def function(self) -> ModuleFunction | int:
        return self.prefix.function

    @property
    def function_name(self) -> str | None:
        return function_name(int(self.prefix.function))

    @property
    def flags(self) -> ModuleFlags:
        return self.prefix.flags

    @property
    def is_compressed(self) -> bool:
        return bool(self.prefix.flags & ModuleFlags.COMPRESSED)

    @property
    def is_combined(self) -> bool:
        return bool(self.prefix.flags & ModuleFlags.COMBINED)

    @property
    def extensions(self) -> tuple[Extension, ...]:
        return self.prefix.extensions + self.suffix.extensions

    @property
    def asset_name(self) -> str | None:
        """The name an asset module gives its data (NAME extension)."""
        for ext in self.suffix.extensions:
            if isinstance(ext, NameExtension):
                return ext.name
        return None

    @property
    def asset_hash(self) -> bytes | None:
        """SHA-256 of an asset module's raw data (HASH extension)."""
        for ext in self.suffix.extensions:
            if isinstance(ext, HashExtension):
                return ext.hash
        return None

    @property
    def asset_dependencies(self) -> tuple[AssetRef, ...]:
        return tuple(
            AssetRef(ext.name, ext.hash_type, ext.hash)
            for ext in self.extensions
            if isinstance(ext, AssetDependencyExtension)
        )

    @property
    def security_mode(self) -> SecurityModeExtension | None:
        for ext in self.extensions:
            if isinstance(ext, SecurityModeExtension):
                return ext
        return None

    @property
    def all_dependencies(self) -> tuple[Dependency, ...]:
        """The used prefix slots, then any DEPENDENCY extensions."""
        extra = tuple(e.dependency for e in self.extensions if isinstance(e, DependencyExtension))
        return self.prefix.dependencies + extra

    @property
    def system_dependency_version(self) -> int | None:
        """The minimum system-part version this module needs, if it names one."""
        for dep in self.prefix.dependencies:
            if dep.function == ModuleFunction.SYSTEM_PART:
                return dep.version
        return None

    @property
    def runs_device_os_4(self) -> bool:
        """Built for Device OS 4.0 or later, where PRODUCT_ID is gone (the platform cannot run older, the
        module depends on a >= 4 system part, or its product id field already holds the platform id)."""
        from firmware_tools.particle.constants import DEVICE_OS_4_ONLY_PLATFORMS

        system = self.system_dependency_version
        return (
            self.prefix.platform_id in DEVICE_OS_4_ONLY_PLATFORMS
            or (system is not None and system >= DEVICE_OS_4_MODULE_VERSION)
            or self.product_id_meaning == "platform-id"
        )

    @property
    def product_id_meaning(self) -> str:
        """What the product id field holds: absent, unset, platform-id (Device OS >= 4) or product-id."""
        pid, ver = self.suffix.product_id, self.suffix.product_version
        if pid is None or ver is None:
            return "absent"
        if (pid, ver) in ((0xFFFF, 0xFFFF), (0, 0)):
            return "unset"
        sysver = self.system_dependency_version
        if pid == self.prefix.platform_id and (sysver is None or sysver >= DEVICE_OS_4_MODULE_VERSION):
            return "platform-id"
        return "product-id"
