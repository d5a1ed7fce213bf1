"""Ed25519 keys: PEM files, the gate's keyring of trusted keys, and signature checks.

Key files are PEM (PKCS#8 private, SubjectPublicKeyInfo public). A public key is read
here: an Ed25519 SubjectPublicKeyInfo is always the same 12 DER bytes and the 32-byte key,
and anything else is refused, so a gate does not load ``cryptography`` (8 MB resident)
just to read its trusted keys. Private keys are read and written with ``cryptography``'s
serialization, imported by the tools that do so. Every signature is made, and every
message up to 64 KiB checked, by libsodium through PyNaCl: OpenSSL (behind
``cryptography``) accepts a signature on any message from a small-order public key,
libsodium refuses it. On top of libsodium we refuse, explicitly, public keys that are
non-canonical, of small order or outside the prime-order subgroup, and signatures whose S
is not below the group order L. Bigger messages (big revocation lists) are checked by
OpenSSL behind those same explicit checks, because it reads the message in place
(``cryptography`` is imported at the first such message, or at start by a daemon that
takes lists over MQTT: ``load_in_place_verifier``).

Trusted keys live in two folders with separate roles: ``[trust] keys_dir`` holds
issuer keys (credentials), ``[trust] ops_keys_dir`` ops keys (revocation lists,
commands, time). ``<kid>.pub`` is the key; an optional ``<kid>.toml`` beside it holds
``not_before`` / ``not_after`` (ISO 8601) so keys rotate without a flag day.
"""

from __future__ import annotations

import binascii
import os
import re
import tomllib
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import nacl.bindings
import nacl.exceptions
import nacl.signing

from agent.core.errors import KeyFileError, ProtocolError, UsageError
from agent.core.reasons import Reason
from agent.core.timefmt import format_instant, parse_instant

Role = Literal["issuer", "ops"]
ROLES: tuple[Role, ...] = ("issuer", "ops")
SigningKey = nacl.signing.SigningKey

# Ed25519 group order L: a signature's S must be below it (RFC 8032 §5.1.7).
GROUP_ORDER = 2**252 + 27742317777372353535851937790883648493
FIELD_PRIME = 2**255 - 19
IN_PLACE_BYTES = 64 * 1024  # messages above this are verified without copies (OpenSSL)
# Encodings of the points of small order (x sign bit cleared), as libsodium lists them.
_SMALL_ORDER = frozenset(
    bytes.fromhex(h)
    for h in (
        "00" * 32,  # order 4
        "01" + "00" * 31,  # identity
        "26e8958fc2b227b045c3f489f2ef98f0d5dfac05d3c63339b13802886d53fc05",  # order 8
        "c7176a703d4dd84fba3c0b760d10670f2a2053fa2c39ccc64ec7fd7792ac037a",  # order 8
        "ec" + "ff" * 30 + "7f",  # order 2
    )
)
# SEQUENCE { SEQUENCE { OID 1.3.101.112 (Ed25519) }, BIT STRING (33 bytes, 0 unused) }
_ED25519_SPKI = bytes.fromhex("302a300506032b6570032100")
_PEM_PUBLIC = re.compile(rb"-----BEGIN PUBLIC KEY-----([A-Za-z0-9+/=\s]*)-----END PUBLIC KEY-----")
_KID_OK = frozenset("abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ0123456789-_.")


def check_kid(kid: str) -> str:
    """A kid names a file: letters, digits, ``-_.``, 1 to 64 characters."""
    if not 1 <= len(kid) <= 64 or not set(kid) <= _KID_OK or kid.startswith("."):
        raise UsageError(
            f"key id {kid!r} is not usable: use 1-64 letters, digits, '-', '_' or '.'"
        )
    return kid


def is_canonical_and_not_small_order(public: bytes) -> bool:
    """Cheap explicit check done on every signature: y < p and not a small-order point."""
    if len(public) != 32:
        return False
    y = int.from_bytes(public, "little") & ((1 << 255) - 1)
    if y >= FIELD_PRIME:
        return False
    return public[:31] + bytes((public[31] & 0x7F,)) not in _SMALL_ORDER


def is_acceptable_public_key(public: bytes) -> bool:
    """The full check for keys we load or issue to: canonical, not small order, on the
    curve and in the prime-order subgroup (libsodium's point validation)."""
    if not is_canonical_and_not_small_order(public):
        return False
    return bool(nacl.bindings.crypto_core_ed25519_is_valid_point(public))


def verify_signature(public: bytes, message: bytes, signature: bytes) -> bool:
    """libsodium Ed25519 verify, plus explicit canonical-key, small-order and
    canonical-S (S < L) checks, so safety never rests on one library; never raises.

    A message over ``IN_PLACE_BYTES`` (a big revocation list) is checked by OpenSSL in
    place instead: PyNaCl's ``crypto_sign_open`` copies the message twice (signature +
    message, and its output), which is 12 MB more for a 6 MB list. The explicit checks
    above are what OpenSSL lacks (it accepts forgeries on small-order keys), so both
    paths accept the same signatures."""
    if len(signature) != 64 or not is_canonical_and_not_small_order(public):
        return False
    if int.from_bytes(signature[32:], "little") >= GROUP_ORDER:
        return False
    if len(message) > IN_PLACE_BYTES:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives.asymmetric import ed25519

        try:
            ed25519.Ed25519PublicKey.from_public_bytes(public).verify(signature, message)
        except (InvalidSignature, ValueError):
            return False
        return True
    try:
        nacl.bindings.crypto_sign_open(signature + message, public)
    except (nacl.exceptions.BadSignatureError, nacl.exceptions.ValueError, ValueError):
        return False
    return True


def load_in_place_verifier() -> None:
    """Import what checks messages over ``IN_PLACE_BYTES`` now, not at the first one.

    A gate that takes lists over MQTT calls this at start: the library's ~8 MB is then
    part of its steady memory, not a rise the first big (possibly forged) list causes."""
    from cryptography.hazmat.primitives.asymmetric import ed25519  # noqa: F401


def verify_signature_parts(
    public: bytes, parts: Sequence[bytes | memoryview], signature: bytes
) -> bool:
    """``verify_signature`` over the concatenation of ``parts`` with one copy of the
    message, not three (PyNaCl's ``crypto_sign_open`` also returns a copy): a full list
    of ten million ids is a 170 MB message. Never raises."""
    if len(signature) != 64 or not is_canonical_and_not_small_order(public):
        return False
    if int.from_bytes(signature[32:], "little") >= GROUP_ORDER:
        return False
    signed = b"".join((signature, *parts))
    try:  # libsodium accepts a NULL output: verify, copy nothing
        from nacl._sodium import ffi, lib
    except ImportError:  # pragma: no cover - PyNaCl without its cffi module
        return verify_signature(public, signed[64:], signature)
    if len(public) != 32:
        return False
    return bool(lib.crypto_sign_open(ffi.NULL, ffi.NULL, signed, len(signed), public) == 0)


def sign(key: SigningKey, message: bytes) -> bytes:
    """Detached Ed25519 signature (64 bytes) made by libsodium."""
    return bytes(key.sign(message).signature)


@dataclass(frozen=True)
class TrustedKey:
    kid: str
    public: bytes
    role: Role
    not_before: float | None = None
    not_after: float | None = None


class KeyRing:
    """Trusted public keys by (kid, role); a key of one role never serves the other."""

    def __init__(self, keys: Mapping[tuple[str, str], TrustedKey] | None = None) -> None:
        self._keys: dict[tuple[str, str], TrustedKey] = dict(keys or {})

    @classmethod
    def of(cls, *keys: TrustedKey) -> KeyRing:
        return cls({(k.kid, k.role): k for k in keys})

    def __len__(self) -> int:
        return len(self._keys)

    def keys(self) -> list[TrustedKey]:
        return list(self._keys.values())

    def get(self, kid: str, role: str, at: float) -> TrustedKey:
        """The key ``kid`` of ``role`` valid at ``at``; ProtocolError(unknown_key) if none."""
        key = self._keys.get((kid, role))
        if key is None:
            others = [r for r in ROLES if r != role and (kid, r) in self._keys]
            if others:
                raise ProtocolError(
                    Reason.UNKNOWN_KEY, f"key {kid!r} is an {others[0]} key, not an {role} key"
                )
            raise ProtocolError(Reason.UNKNOWN_KEY, f"no trusted {role} key {kid!r}")
        if key.not_before is not None and at < key.not_before:
            raise ProtocolError(
                Reason.UNKNOWN_KEY,
                f"{role} key {kid!r} is not valid before {format_instant(key.not_before)}",
            )
        if key.not_after is not None and at > key.not_after:
            raise ProtocolError(
                Reason.UNKNOWN_KEY,
                f"{role} key {kid!r} was retired at {format_instant(key.not_after)}",
            )
        return key


def load_keyring(issuers_dir: Path, ops_dir: Path) -> KeyRing:
    """Read every ``<kid>.pub`` (and ``<kid>.toml``) of both folders; KeyFileError lists all."""
    keys: dict[tuple[str, str], TrustedKey] = {}
    problems: list[str] = []
    for role, folder in (("issuer", issuers_dir), ("ops", ops_dir)):
        if not folder.is_dir():
            problems.append(f"{folder}: trusted {role} key folder does not exist")
            continue
        for pub in sorted(folder.glob("*.pub")):
            try:
                key = _load_trusted(pub, role)  # type: ignore[arg-type]
            except (KeyFileError, UsageError) as exc:
                problems.append(str(exc))
                continue
            keys[(key.kid, key.role)] = key
    if problems:
        raise KeyFileError("; ".join(problems))
    return KeyRing(keys)


def load_ops_keyring(ops_dir: Path) -> KeyRing:
    """The gates' ops trust alone (``gatectl revocations publish --trust``, the centre)."""
    if not ops_dir.is_dir():
        raise KeyFileError(f"{ops_dir}: trusted ops key folder does not exist")
    keys: dict[tuple[str, str], TrustedKey] = {}
    for pub in sorted(ops_dir.glob("*.pub")):
        key = _load_trusted(pub, "ops")
        keys[(key.kid, key.role)] = key
    if not keys:
        raise KeyFileError(f"{ops_dir} holds no <kid>.pub ops key: copy the gates' ops keys there")
    return KeyRing(keys)


def _load_trusted(pub: Path, role: Role) -> TrustedKey:
    kid = pub.stem
    try:
        check_kid(kid)
    except UsageError:
        raise KeyFileError(f"{pub}: file name is not a usable key id") from None
    public = load_public_key(pub)
    not_before = not_after = None
    sidecar = pub.with_suffix(".toml")
    if sidecar.exists():
        not_before, not_after = _load_validity(sidecar)
    return TrustedKey(kid, public, role, not_before, not_after)


def _load_validity(path: Path) -> tuple[float | None, float | None]:
    try:
        raw = tomllib.loads(path.read_text(encoding="utf-8"))
    except (OSError, UnicodeDecodeError, tomllib.TOMLDecodeError) as exc:
        raise KeyFileError(f"{path}: cannot read key validity: {exc}") from None
    unknown = set(raw) - {"not_before", "not_after"}
    if unknown:
        raise KeyFileError(
            f"{path}: unknown keys {', '.join(sorted(unknown))} (known: not_before, not_after)"
        )
    bounds: list[float | None] = []
    for name in ("not_before", "not_after"):
        value = raw.get(name)
        if value is None:
            bounds.append(None)
            continue
        try:
            bounds.append(parse_instant(value if isinstance(value, str) else value.isoformat()))
        except (UsageError, AttributeError):
            raise KeyFileError(
                f"{path}: {name} must be an ISO 8601 time such as 2026-01-01T00:00:00Z"
            ) from None
    return bounds[0], bounds[1]


def load_public_key(path: Path) -> bytes:
    """Raw 32-byte Ed25519 public key from a SubjectPublicKeyInfo PEM; KeyFileError."""
    data = _read(path)
    match = _PEM_PUBLIC.search(data)
    try:
        if match is None:
            raise binascii.Error("no PEM public key block")
        der = binascii.a2b_base64(re.sub(rb"\s+", b"", match.group(1)), strict_mode=True)
    except binascii.Error:  # no PEM block, or its body is not base64
        raise KeyFileError(
            f"{path}: not a PEM public key (expected SubjectPublicKeyInfo from gatectl keys new)"
        ) from None
    if len(der) != len(_ED25519_SPKI) + 32 or not der.startswith(_ED25519_SPKI):
        raise KeyFileError(f"{path}: not an Ed25519 public key")
    raw = der[len(_ED25519_SPKI):]
    if not is_acceptable_public_key(raw):
        raise KeyFileError(f"{path}: Ed25519 public key is of small order or non-canonical")
    return raw


def load_signing_key(path: Path) -> SigningKey:
    """Ed25519 private key from a PKCS#8 PEM (mode 0600 or stricter); KeyFileError."""
    from cryptography.exceptions import UnsupportedAlgorithm
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    data = _read(path)
    if b"-----BEGIN PUBLIC KEY-----" in data:
        raise KeyFileError(
            f"{path}: this is a public key: give the private KID.key that gatectl keys new "
            "wrote beside it"
        )
    try:
        key = serialization.load_pem_private_key(data, password=None)
    except (ValueError, TypeError, UnsupportedAlgorithm):
        raise KeyFileError(
            f"{path}: not an unencrypted PKCS#8 PEM private key (make one with gatectl keys new)"
        ) from None
    if not isinstance(key, ed25519.Ed25519PrivateKey):
        raise KeyFileError(f"{path}: not an Ed25519 private key")
    # Checked once the file is known to be a private key, so a wrong file is named as such.
    if os.name == "posix" and path.stat().st_mode & 0o077:
        raise KeyFileError(
            f"{path}: private key is readable by others: run chmod 600 {path}"
        )
    seed = key.private_bytes(
        serialization.Encoding.Raw,
        serialization.PrivateFormat.Raw,
        serialization.NoEncryption(),
    )
    return nacl.signing.SigningKey(seed)


def public_of(key: SigningKey) -> bytes:
    return bytes(key.verify_key)


def write_keypair(folder: Path, name: str, key: SigningKey | None = None) -> tuple[Path, Path]:
    """Write ``name.key`` (PKCS#8 PEM, 0600) and ``name.pub``; refuse to overwrite."""
    from cryptography.hazmat.primitives import serialization
    from cryptography.hazmat.primitives.asymmetric import ed25519

    key = key or nacl.signing.SigningKey.generate()
    if folder.exists() and not folder.is_dir():
        raise UsageError(f"{folder} is a file, not a folder: give a folder for --out")
    try:
        folder.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise UsageError(
            f"cannot make the key folder {folder}: {exc.strerror}: choose another --out"
        ) from None
    private_path, public_path = folder / f"{name}.key", folder / f"{name}.pub"
    for path in (private_path, public_path):
        if path.exists():
            raise UsageError(f"{path} already exists: remove it or choose another --out/--kid")
    private = ed25519.Ed25519PrivateKey.from_private_bytes(bytes(key))
    pem = private.private_bytes(
        serialization.Encoding.PEM,
        serialization.PrivateFormat.PKCS8,
        serialization.NoEncryption(),
    )
    try:
        fd = os.open(private_path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o600)
    except OSError as exc:
        raise UsageError(
            f"cannot write {private_path}: {exc.strerror}: choose another --out"
        ) from None
    with os.fdopen(fd, "wb") as handle:
        handle.write(pem)
    public_path.write_bytes(
        private.public_key().public_bytes(
            serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo
        )
    )
    return private_path, public_path


def _read(path: Path) -> bytes:
    try:
        data = path.read_bytes()
    except FileNotFoundError:
        raise KeyFileError(f"{path}: key file does not exist") from None
    except OSError as exc:
        raise KeyFileError(f"{path}: cannot read key file: {exc.strerror}") from None
    if len(data) > 16384:
        raise KeyFileError(f"{path}: too large to be a key file")
    return data
