"""Signed release bundles (``NAME.fwpkg``): a zip of manifest.json, manifest.sig and the images.

The station's one call is ``open_verified_bundle``; ``build_release`` + ``write_bundle`` make one.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from firmware_tools.lazy_exports import lazy_exports

if TYPE_CHECKING:
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

# Each name is imported on first use: format detection must not pay for cryptography and the release code.
_EXPORTS = {
    "EspFacts": "firmware_tools.bundle.manifest",
    "Family": "firmware_tools.bundle.manifest",
    "ImageEntry": "firmware_tools.bundle.manifest",
    "ImageKind": "firmware_tools.bundle.manifest",
    "Manifest": "firmware_tools.bundle.manifest",
    "ParticleFacts": "firmware_tools.bundle.manifest",
    "Product": "firmware_tools.bundle.manifest",
    "Target": "firmware_tools.bundle.manifest",
    "decode_manifest": "firmware_tools.bundle.manifest",
    "encode_manifest": "firmware_tools.bundle.manifest",
    "Release": "firmware_tools.bundle.release",
    "ReleasedImage": "firmware_tools.bundle.release",
    "ReleaseInput": "firmware_tools.bundle.release",
    "ReleaseRefused": "firmware_tools.bundle.release",
    "build_release": "firmware_tools.bundle.release",
    "pack_bundle": "firmware_tools.bundle.release",
    "write_bundle": "firmware_tools.bundle.release",
    "BundleVerification": "firmware_tools.bundle.verify",
    "VerifiedBundle": "firmware_tools.bundle.verify",
    "VerifiedImage": "firmware_tools.bundle.verify",
    "open_verified_bundle": "firmware_tools.bundle.verify",
    "verify_bundle": "firmware_tools.bundle.verify",
    "verify_stream": "firmware_tools.bundle.verify",
    "PublicKey": "firmware_tools.keys",
    "PublicKeyLike": "firmware_tools.keys",
    "SigningKey": "firmware_tools.keys",
    "key_id_of": "firmware_tools.keys",
    "load_public_key": "firmware_tools.keys",
    "load_signing_key": "firmware_tools.keys",
}

__getattr__ = lazy_exports(__name__, _EXPORTS)


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
