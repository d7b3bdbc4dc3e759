"""Signed bundles between the server and the air-gapped editor laptop (docs/formats.md §6).

No web imports: the editor tool installs this package without the server stack.
"""

from .bundle import (
    EXPORT_FORMAT,
    MANIFEST,
    MAX_MANIFEST,
    OUTBOX_FORMAT,
    SIGNATURE,
    BundleWriter,
    Entry,
    MemberStream,
    OpenedBundle,
    bundle_to_bytes,
    canonical_json,
    extract_bundle,
    open_bundle,
    parse_manifest,
    sign_manifest,
    signed_message,
    verify_signature,
    write_bundle_file,
)
from .errors import BundleError

__all__ = [
    "EXPORT_FORMAT",
    "MANIFEST",
    "MAX_MANIFEST",
    "OUTBOX_FORMAT",
    "SIGNATURE",
    "BundleError",
    "BundleWriter",
    "Entry",
    "MemberStream",
    "OpenedBundle",
    "bundle_to_bytes",
    "canonical_json",
    "extract_bundle",
    "open_bundle",
    "parse_manifest",
    "sign_manifest",
    "signed_message",
    "verify_signature",
    "write_bundle_file",
]
