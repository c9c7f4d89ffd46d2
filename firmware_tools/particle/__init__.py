"""Particle Device OS module binaries: parse, validate, stamp product fields, pack payloads into modules."""

from firmware_tools.particle.constants import PLATFORMS, platform_id_from, platform_name
from firmware_tools.particle.model import (
    AssetDependencyExtension,
    AssetRef,
    AssetTypeExtension,
    Dependency,
    DependencyExtension,
    DynamicLocationExtension,
    Extension,
    ExtensionType,
    HashExtension,
    ModuleFlags,
    ModuleFunction,
    ModulePrefix,
    ModuleSuffix,
    NameExtension,
    ParticleModule,
    ProductDataExtension,
    SecurityModeExtension,
)
from firmware_tools.particle.order import flash_order, flash_order_key
from firmware_tools.particle.pack import pack_asset, pack_module
from firmware_tools.particle.parse import decompress_module, parse_module, split_combined
from firmware_tools.particle.report import module_json, summary_lines
from firmware_tools.particle.stamp import stamp_product
from firmware_tools.particle.transform import combine_modules, compress_module
from firmware_tools.particle.validate import validate_module

__all__ = [
    "PLATFORMS",
    "AssetDependencyExtension",
    "AssetRef",
    "AssetTypeExtension",
    "Dependency",
    "DependencyExtension",
    "DynamicLocationExtension",
    "Extension",
    "ExtensionType",
    "HashExtension",
    "ModuleFlags",
    "ModuleFunction",
    "ModulePrefix",
    "ModuleSuffix",
    "NameExtension",
    "ParticleModule",
    "ProductDataExtension",
    "SecurityModeExtension",
    "combine_modules",
    "compress_module",
    "decompress_module",
    "flash_order",
    "flash_order_key",
    "module_json",
    "pack_asset",
    "pack_module",
    "parse_module",
    "platform_id_from",
    "platform_name",
    "split_combined",
    "stamp_product",
    "summary_lines",
    "validate_module",
]
