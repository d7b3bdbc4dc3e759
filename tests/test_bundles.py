"""app.bundles: the tar layout, canonical manifest, Ed25519 signatures, the strict reader.

Real keys, real tar bytes (ours, and hostile ones written by the standard library), real
extraction into a folder whose surroundings are checked afterwards.
"""

from __future__ import annotations

import base64
import hashlib
import io
import json
import os
import tarfile
from pathlib import Path

import pytest
from nacl.signing import SigningKey
from roundtrip_helper import craft_tar, export_manifest, tree_snapshot

from app.bundles import (
    EXPORT_FORMAT,
    MAX_MANIFEST,
    OUTBOX_FORMAT,
    BundleError,
    bundle_to_bytes,
    canonical_json,
    extract_bundle,
    open_bundle,
    sign_manifest,
)
from app.bundles.ustar import member_header

KEY = SigningKey(b"\x01" * 32)
OTHER = SigningKey(b"\x02" * 32)


def trusted(key: SigningKey = KEY):
    return lambda manifest: bytes(key.verify_key)


def sample(seq: int = 1):
    subs = [
        ("sub-A", "2026-11-25", None, {"message": b"M" * 700, "file-1": b"\x00\x01" * 3000}),
        ("sub-B", "2026-11-26", "sub-A", {"message": b"N" * 300}),
    ]
    return export_manifest(KEY, "default", seq, subs)


def good_bundle() -> bytes:
    manifest, members = sample()
    return bundle_to_bytes(manifest, KEY, members)


def read_all(data: bytes, fmt: str = EXPORT_FORMAT, key: SigningKey = KEY) -> dict[str, bytes]:
    bundle = open_bundle(io.BytesIO(data), fmt, trusted(key))
    return {e.path: s.read() for e, s in bundle.members()}


def assemble(manifest: dict, members: list, key: SigningKey = KEY, fmt: str = EXPORT_FORMAT,
             manifest_bytes: bytes | None = None) -> bytes:
    """A bundle with a valid signature over ``manifest`` but arbitrary (hostile) members."""
    mb = manifest_bytes if manifest_bytes is not None else canonical_json(manifest)
    return craft_tar([("manifest.json", mb), ("manifest.sig", sign_manifest(fmt, mb, key)),
                      *members])


def test_round_trip_layout_is_deterministic_and_tar_compatible() -> None:
    data = good_bundle()
    assert data == good_bundle()  # no time, no owner: reproducible
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:  # any tar tool can list it
        names = tar.getnames()
        assert all(m.mtime == 0 and m.uid == 0 and m.isreg() for m in tar.getmembers())
    assert names == ["manifest.json", "manifest.sig", "submissions/sub-A/message.age",
                     "submissions/sub-A/file-1.age", "submissions/sub-B/message.age"]
    out = read_all(data)
    assert out["submissions/sub-A/file-1.age"] == b"\x00\x01" * 3000
    manifest = json.loads(tarfile.open(fileobj=io.BytesIO(data)).extractfile("manifest.json").read())
    assert manifest["sequence"] == 1 and manifest["submissions"][1]["parent_id"] == "sub-A"


def test_signature_is_domain_separated() -> None:
    manifest, members = sample()
    data = bundle_to_bytes(manifest, KEY, members)
    with pytest.raises(BundleError, match="not an outbox bundle"):
        open_bundle(io.BytesIO(data), OUTBOX_FORMAT, trusted())
    # the same bytes signed as an outbox do not verify as an export
    mb = canonical_json(manifest)
    forged = craft_tar([("manifest.json", mb),
                        ("manifest.sig", sign_manifest(OUTBOX_FORMAT, mb, KEY))])
    with pytest.raises(BundleError, match="signature does not verify"):
        open_bundle(io.BytesIO(forged), EXPORT_FORMAT, trusted())


def _flip(data: bytes, offset: int) -> bytes:
    b = bytearray(data)
    b[offset] ^= 0x01
    return bytes(b)


def _offset_of(data: bytes, name: str) -> int:
    """Offset of the first data byte of member ``name``."""
    with tarfile.open(fileobj=io.BytesIO(data)) as tar:
        return tar.getmember(name).offset_data


@pytest.mark.parametrize("case", ["ciphertext", "manifest", "signature", "header"])
def test_one_flipped_byte_is_refused(case: str) -> None:
    data = good_bundle()
    offsets = {
        "ciphertext": _offset_of(data, "submissions/sub-A/file-1.age") + 1234,
        "manifest": _offset_of(data, "manifest.json") + 40,
        "signature": _offset_of(data, "manifest.sig") + 10,
        "header": 512 * 0 + 20,  # in manifest.json's tar header name field: checksum breaks
    }
    with pytest.raises(BundleError) as info:
        read_all(_flip(data, offsets[case]))
    assert "\n" not in str(info.value)


@pytest.mark.parametrize("cut", [100, 512, 1536, 4000, -1024, -512, -1])
def test_truncated_bundle_is_refused(cut: int) -> None:
    data = good_bundle()
    with pytest.raises(BundleError):
        read_all(data[:cut])


def test_unknown_key_is_refused() -> None:
    manifest, members = sample()
    signed_by_other = bundle_to_bytes(manifest, OTHER, members)
    with pytest.raises(BundleError, match="signature does not verify"):
        read_all(signed_by_other)


HOSTILE = {
    "dotdot": lambda: [("../x", b"evil")],
    "dotdot-deep": lambda: [("submissions/../../x", b"evil")],
    "absolute": lambda: [("/tmp/guwah-evil", b"evil")],
    "symlink": lambda: [_info("submissions/sub-A/message.age", tarfile.SYMTYPE, "/etc/passwd")],
    "hardlink": lambda: [_info("submissions/sub-A/message.age", tarfile.LNKTYPE, "manifest.json")],
    "chardev": lambda: [_info("submissions/sub-A/message.age", tarfile.CHRTYPE)],
    "blockdev": lambda: [_info("submissions/sub-A/message.age", tarfile.BLKTYPE)],
    "fifo": lambda: [_info("submissions/sub-A/message.age", tarfile.FIFOTYPE)],
    "directory": lambda: [_info("submissions/sub-A", tarfile.DIRTYPE)],
    "not-in-manifest": lambda: [("submissions/sub-Z/message.age", b"x")],
    "duplicate-member": lambda: [("submissions/sub-A/message.age", b"M" * 700),
                                 ("submissions/sub-A/message.age", b"M" * 700)],
    "manifest-twice": lambda: [("manifest.json", b"{}")],
}


def _info(name: str, kind: bytes, link: str = "") -> tarfile.TarInfo:
    info = tarfile.TarInfo(name)
    info.type = kind
    info.linkname = link
    return info


@pytest.mark.parametrize("case", sorted(HOSTILE))
def test_hostile_members_are_refused_before_anything_is_written(case: str, tmp_path: Path) -> None:
    manifest, _ = sample()
    data = assemble(manifest, HOSTILE[case]())
    src = tmp_path / "in" / "b.tar"
    src.parent.mkdir()
    src.write_bytes(data)
    target = tmp_path / "out"
    target.mkdir()
    before = tree_snapshot(tmp_path)
    with pytest.raises(BundleError) as info:
        extract_bundle(src, target, EXPORT_FORMAT, trusted())
    assert "\n" not in str(info.value)
    assert tree_snapshot(tmp_path) == before  # nothing inside or outside the target
    assert not Path("/tmp/guwah-evil").exists()


def test_member_after_the_last_listed_one_is_refused() -> None:
    manifest, members = sample()
    good = list(members.items())
    data = assemble(manifest, [*good, ("submissions/sub-Z/message.age", b"x")])
    with pytest.raises(BundleError, match="does not list"):
        read_all(data)


def test_members_out_of_order_are_refused() -> None:
    manifest, members = sample()
    items = list(members.items())
    data = assemble(manifest, [items[1], items[0], items[2]])
    with pytest.raises(BundleError, match="duplicated or out of order"):
        read_all(data)


def test_wrong_size_is_refused() -> None:
    manifest, members = sample()
    items = list(members.items())
    items[0] = (items[0][0], items[0][1] + b"!")
    with pytest.raises(BundleError, match="the manifest says"):
        read_all(assemble(manifest, items))


def test_data_after_the_end_is_refused() -> None:
    with pytest.raises(BundleError, match="after its end"):
        read_all(good_bundle() + b"\0" * 512 + b"x" + b"\0" * 511)
    read_all(good_bundle() + b"\0" * 10240)  # zero padding (tar record size) is fine


def test_duplicate_submission_ids_are_refused() -> None:
    manifest, members = sample()
    manifest["submissions"].append(dict(manifest["submissions"][1]))
    with pytest.raises(BundleError, match="appears twice"):
        read_all(assemble(manifest, list(members.items())))


def test_duplicate_json_keys_and_non_canonical_manifests_are_refused() -> None:
    manifest, members = sample()
    mb = canonical_json(manifest)
    dup = mb[:-1] + b',"desk":"other"}'
    with pytest.raises(BundleError, match="twice"):
        read_all(assemble(manifest, list(members.items()), manifest_bytes=dup))
    pretty = json.dumps(manifest, indent=1, sort_keys=True).encode()
    with pytest.raises(BundleError, match="canonical"):
        read_all(assemble(manifest, list(members.items()), manifest_bytes=pretty))


def test_oversized_manifest_is_refused_without_reading_it() -> None:
    manifest, members = sample()
    manifest["submissions"][0]["padding"] = "x" * (MAX_MANIFEST + 1)
    mb = canonical_json(manifest)
    header = member_header("manifest.json", len(mb))
    with pytest.raises(BundleError, match="larger than 16 MiB"):
        open_bundle(io.BytesIO(header + mb[:1024]), EXPORT_FORMAT, trusted())
    with pytest.raises(BundleError, match="larger than 16 MiB"):
        bundle_to_bytes(manifest, KEY, members)  # the writer refuses too


@pytest.mark.parametrize("path", ["../x.age", "/abs.age", "submissions/sub-A/../../x.age"])
def test_manifest_paths_must_be_the_canonical_ones(path: str) -> None:
    manifest, members = sample()
    manifest["submissions"][0]["files"][0]["path"] = path
    with pytest.raises(BundleError, match="expected"):
        read_all(assemble(manifest, list(members.items())))


def test_outbox_manifest_shape() -> None:
    reply = b"age-ciphertext" * 10
    manifest = {
        "format": OUTBOX_FORMAT,
        "editor_key": base64.b64encode(bytes(KEY.verify_key)).decode(),
        "desk": "default",
        "bundle_id": "b" * 32,
        "replies": [{"id": "r1", "submission_id": "sub-A", "path": "replies/r1.age",
                     "size": len(reply), "sha256": hashlib.sha256(reply).hexdigest()}],
        "done": ["sub-A", "sub-B"],
    }
    data = bundle_to_bytes(manifest, KEY, {"replies/r1.age": reply})
    assert read_all(data, OUTBOX_FORMAT) == {"replies/r1.age": reply}
    manifest["done"] = ["sub-A", "sub-A"]
    with pytest.raises(BundleError, match="twice"):
        read_all(assemble(manifest, [("replies/r1.age", reply)], fmt=OUTBOX_FORMAT),
                 OUTBOX_FORMAT)


def test_extraction_is_atomic(tmp_path: Path) -> None:
    manifest, members = sample()
    good = tmp_path / "good.tar"
    good.write_bytes(bundle_to_bytes(manifest, KEY, members))
    target = tmp_path / "out"
    final = extract_bundle(good, target, EXPORT_FORMAT, trusted())
    assert (final / "submissions/sub-A/file-1.age").read_bytes() == b"\x00\x01" * 3000
    assert oct((final / "submissions/sub-A/file-1.age").stat().st_mode & 0o777) == "0o600"
    with pytest.raises(BundleError, match="already exists"):
        extract_bundle(good, target, EXPORT_FORMAT, trusted())
    bad = tmp_path / "bad.tar"
    bad.write_bytes(_flip(good.read_bytes(), _offset_of(good.read_bytes(),
                                                        "submissions/sub-B/message.age") + 5))
    with pytest.raises(BundleError, match="SHA-256"):
        extract_bundle(bad, target, EXPORT_FORMAT, trusted())
    # the first members were written to staging and then removed: nothing half-extracted
    assert sorted(os.listdir(target)) == ["good"]
