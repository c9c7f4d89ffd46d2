"""Signed release bundles (``NAME.fwpkg``): a zip of manifest.json, manifest.sig and the images.

The station's one call is ``open_verified_bundle``; ``build_release`` + ``write_bundle`` make one.
"""

from firmware_tools.bundle.manifest import (
    EspFacts,
    Family,
    ImageEntry,
    ImageKind,
    Manifest,
    ParticleFacts,
    Product,
    Target,
    decode_manifest,
    encode_manifest,
)
from firmware_tools.bundle.release import (
    Release,
    ReleasedImage,
    ReleaseInput,
    ReleaseRefused,
    build_release,
    pack_bundle,
    write_bundle,
)
from firmware_tools.bundle.verify import (
    BundleVerification,
    VerifiedBundle,
    VerifiedImage,
    open_verified_bundle,
    verify_bundle,
    verify_stream,
)
from firmware_tools.keys import PublicKey, PublicKeyLike, SigningKey, key_id_of, load_public_key, load_signing_key

__all__ = [
    "BundleVerification",
    "EspFacts",
    "Family",
    "ImageEntry",
    "ImageKind",
    "Manifest",
    "ParticleFacts",
    "Product",
    "PublicKey",
    "PublicKeyLike",
    "Release",
    "ReleaseInput",
    "ReleaseRefused",
    "ReleasedImage",
    "SigningKey",
    "Target",
    "VerifiedBundle",
    "VerifiedImage",
    "build_release",
    "decode_manifest",
    "encode_manifest",
    "key_id_of",
    "load_public_key",
    "load_signing_key",
    "open_verified_bundle",
    "pack_bundle",
    "verify_bundle",
    "verify_stream",
    "write_bundle",
]
