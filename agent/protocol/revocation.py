"""Signed, versioned revocation lists (centre -> gates): full snapshots and deltas.

A full list replaces everything; a delta moves the gate from exactly ``base`` to
``version``. Entries revoke one credential (``cti``) or every credential of a courier
(``sub``) issued before ``before`` (all of them when ``before`` is None).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal


@dataclass(frozen=True)
class RevocationEntry:
    kind: Literal["cti", "sub"]
    value: str  # cti: lower-case hex; sub: the courier id
    before: int | None = None  # sub only: credentials issued (iat) before this Unix time


@dataclass(frozen=True)
class RevocationList:
    kind: Literal["full", "delta"]
    version: int
    base: int | None  # delta only: the version this delta applies to
    issued_at: int  # Unix seconds, when the centre signed it
    add: tuple[RevocationEntry, ...]
    remove: tuple[RevocationEntry, ...] = ()  # delta only: entries lifted again
