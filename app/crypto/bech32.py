"""Bech32 (BIP 173) as age uses it: no 90-character limit, one case per string.

age keys are Bech32 strings (``age1…``, ``AGE-SECRET-KEY-1…``); the post-quantum recipient is
about 1,950 characters long, which is why the BIP 173 length limit is not applied.
"""

from .errors import KeyFormatError

_CHARSET = "qpzry9x8gf2tvdw0s3jn54khce6mua7l"
_GEN = (0x3B6A57B2, 0x26508E6D, 0x1EA119FA, 0x3D4233DD, 0x2A1462B3)


def _polymod(values: list[int]) -> int:
    chk = 1
    for v in values:
        top = chk >> 25
        chk = (chk & 0x1FFFFFF) << 5 ^ v
        for i in range(5):
            chk ^= _GEN[i] if (top >> i) & 1 else 0
    return chk


def _hrp_expand(hrp: str) -> list[int]:
    return [ord(c) >> 5 for c in hrp] + [0] + [ord(c) & 31 for c in hrp]


def _convert(data: bytes | list[int], frombits: int, tobits: int, pad: bool) -> list[int]:
    acc = 0
    bits = 0
    out: list[int] = []
    maxv = (1 << tobits) - 1
    for value in data:
        acc = (acc << frombits) | value
        bits += frombits
        while bits >= tobits:
            bits -= tobits
            out.append((acc >> bits) & maxv)
    if pad:
        if bits:
            out.append((acc << (tobits - bits)) & maxv)
    elif bits >= frombits or ((acc << (tobits - bits)) & maxv):
        raise KeyFormatError("the key has invalid padding bits")
    return out


def encode(hrp: str, data: bytes, upper: bool = False) -> str:
    hrp_l = hrp.lower()
    values = _convert(data, 8, 5, True)
    poly = _polymod([*_hrp_expand(hrp_l), *values, 0, 0, 0, 0, 0, 0]) ^ 1
    checksum = [(poly >> 5 * (5 - i)) & 31 for i in range(6)]
    text = hrp_l + "1" + "".join(_CHARSET[d] for d in values + checksum)
    return text.upper() if upper else text


def decode(text: str) -> tuple[str, bytes]:
    """Return (lower-case hrp, data); raise KeyFormatError on any defect."""
    if text.lower() != text and text.upper() != text:
        raise KeyFormatError("the key mixes upper and lower case")
    text_l = text.lower()
    pos = text_l.rfind("1")
    if pos < 1 or pos + 7 > len(text_l):
        raise KeyFormatError("the key is not a Bech32 string")
    hrp = text_l[:pos]
    if any(ord(c) < 33 or ord(c) > 126 for c in hrp):
        raise KeyFormatError("the key has an invalid prefix")
    try:
        values = [_CHARSET.index(c) for c in text_l[pos + 1 :]]
    except ValueError:
        raise KeyFormatError("the key has a character Bech32 does not allow") from None
    if _polymod(_hrp_expand(hrp) + values) != 1:
        raise KeyFormatError("the key's checksum is wrong (a typo?)")
    return hrp, bytes(_convert(values[:-6], 5, 8, False))
