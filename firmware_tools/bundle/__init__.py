"""Signed release bundles (``NAME.fwpkg``): a zip of manifest.json, manifest.sig and the images."""
