"""QR text framing: a versioned prefix plus base45 (RFC 9285) of CBOR bytes.

Base45 keeps the whole text in the QR alphanumeric alphabet, the densest mode for
it. The text is capped before decoding, so an oversized code costs nothing.

- ``QM1:`` a credential shown as is (static)
- ``QP1:`` a dynamic presentation: the credential plus the phone's proof

Text that has the shape of a prefix (two capital letters, a number, a colon) but that
the gate does not know is ``unsupported_version``; anything else is ``malformed``.

The base45 codec is our own, a few lines of plain Python: the ``base45`` package is
kept out of the product and an earlier numpy version of the decoder pulled numpy
(18 MB resident) into every process that reads a code, serial gates and gatectl too.
Tests hold it to the RFC's examples and to the ``base45`` package.
"""

from __future__ import annotations

import re

from agent.core.errors import ProtocolError
from agent.core.reasons import Reason

PREFIX_CREDENTIAL = "QM1:"
PREFIX_PRESENTATION = "QP1:"
KNOWN_PREFIXES = (PREFIX_CREDENTIAL, PREFIX_PRESENTATION)
# A version-25 QR at error correction M holds ~1,000 alphanumeric characters: far more
# than any credential or presentation, small enough to bound the work per scan.
MAX_QR_TEXT = 1000
_PREFIX_SHAPE = re.compile(r"^[A-Z]{2}[0-9]{1,3}:")
_BASE45 = "0123456789ABCDEFGHIJKLMNOPQRSTUVWXYZ $%*+-./:"
_BASE45_VALUE = bytes(_BASE45.index(chr(i)) if chr(i) in _BASE45 else 255 for i in range(256))


def encode(prefix: str, data: bytes) -> str:
    if prefix not in KNOWN_PREFIXES:
        raise ValueError(f"unknown QR prefix {prefix!r}")
    return prefix + b45encode(data)


def decode(text: str) -> tuple[str, bytes]:
    """Split QR text into (prefix, bytes); ProtocolError malformed/unsupported_version."""
    if len(text) > MAX_QR_TEXT + 2:
        raise ProtocolError(
            Reason.MALFORMED, f"code text of {len(text)} characters is over {MAX_QR_TEXT}"
        )
    text = text.strip("\r\n\t ")
    if not text:
        raise ProtocolError(Reason.MALFORMED, "code text is empty")
    if len(text) > MAX_QR_TEXT:
        raise ProtocolError(
            Reason.MALFORMED, f"code text of {len(text)} characters is over {MAX_QR_TEXT}"
        )
    prefix = text[:4]
    if prefix not in KNOWN_PREFIXES:
        match = _PREFIX_SHAPE.match(text)
        if match:
            raise ProtocolError(
                Reason.UNSUPPORTED_VERSION,
                f"code type {match.group(0)!r} is not supported by this gate "
                f"(known: {', '.join(KNOWN_PREFIXES)})",
            )
        raise ProtocolError(Reason.MALFORMED, "not a gate credential (no known prefix)")
    data = b45decode(text[4:])
    if data is None:
        raise ProtocolError(Reason.MALFORMED, "code text is not valid base45")
    return prefix, data


def b45encode(data: bytes) -> str:
    """RFC 9285 base45: each 2 bytes as 3 characters, low digit first; a last odd byte
    as 2 characters."""
    out: list[str] = []
    full = len(data) // 2 * 2
    for i in range(0, full, 2):
        n = data[i] << 8 | data[i + 1]
        e, rest = divmod(n, 2025)
        d, c = divmod(rest, 45)
        out += (_BASE45[c], _BASE45[d], _BASE45[e])
    if full < len(data):
        d, c = divmod(data[full], 45)
        out += (_BASE45[c], _BASE45[d])
    return "".join(out)


def b45decode(text: str) -> bytes | None:
    """RFC 9285 base45 decode; None when ``text`` is not base45 (a character outside the
    alphabet, a dangling character, a group over 65535 or a last pair over 255)."""
    try:
        raw = text.encode("ascii")
    except UnicodeEncodeError:
        return None
    values = raw.translate(_BASE45_VALUE)
    if len(values) % 3 == 1 or 255 in values:
        return None
    out = bytearray()
    full = len(values) // 3 * 3
    for i in range(0, full, 3):
        n = values[i] + values[i + 1] * 45 + values[i + 2] * 2025
        if n > 0xFFFF:
            return None
        out += n.to_bytes(2, "big")
    if full < len(values):
        last = values[full] + values[full + 1] * 45
        if last > 0xFF:
            return None
        out.append(last)
    return bytes(out)
