"""Padmé padding: hide a file's exact size from anyone who sees only ciphertext.

Padmé (Nikitin et al., "Reducing Metadata Leakage from Encrypted Files and Communication
with PURBs", PETS 2019) rounds a length L up so that at most O(log log L) bits of it are
leaked, with at most about 12% overhead.  Framing (docs/formats.md):

- attachments: plaintext followed by zero bytes up to ``padme(len)``; the true size and
  SHA-256 are recorded in the (encrypted) testimony, and the editor tool truncates;
- the testimony JSON: followed by ASCII spaces up to ``padme(len)``, so it stays valid JSON
  for anyone who opens it with plain ``age -d``.
"""

from collections.abc import Callable

MIN_PADDED = 256  # even a one-line testimony looks like a small one


def padme(length: int) -> int:
    """Return the Padmé length for ``length`` (>= length, >= MIN_PADDED)."""
    if length <= MIN_PADDED:
        return MIN_PADDED
    e = length.bit_length() - 1  # floor(log2 L)
    s = e.bit_length()  # floor(log2 E) + 1
    last_bits = e - s
    mask = (1 << last_bits) - 1
    return (length + mask) & ~mask


def write_padding(write: Callable[[bytes], object], count: int, fill: bytes = b"\x00") -> None:
    """Feed ``count`` fill bytes to ``write`` in bounded blocks (padding can be ~12% of GiBs)."""
    block = fill * 65536
    while count > 0:
        n = min(count, len(block))
        write(block[:n])
        count -= n
