"""The version rules of revocation lists: which list may follow the installed one.

RevocationListError says why a list is refused (``gap=True``: ask for a full list);
a refused list changes nothing. Only :mod:`agent.store.revocations` uses this module.
"""

from __future__ import annotations

from agent.core.errors import RevocationListError
from agent.protocol.revstream import CompactList


def check_full(installed: int | None, lst: CompactList) -> None:
    """A full list must be newer than the installed one and remove nothing."""
    if installed is not None and lst.version <= installed:
        raise RevocationListError(
            f"list version {lst.version} is older than or equal to the installed "
            f"version {installed}: refused (nothing changed)"
        )
    if lst.remove.count:
        raise RevocationListError("a full list must not remove entries: refused")


def check_delta(installed: int | None, lst: CompactList) -> None:
    """A delta must be newer and apply to exactly the installed version (else a gap)."""
    if installed is None:
        raise RevocationListError(
            f"no list installed, delta needs base {lst.base}: "
            "wait for or request a full list",
            gap=True,
        )
    if lst.version <= installed:
        raise RevocationListError(
            f"delta to version {lst.version} is older than or equal to the installed "
            f"version {installed}: refused (nothing changed)"
        )
    if lst.base != installed:
        raise RevocationListError(
            f"installed version {installed}, delta needs base {lst.base}: "
            "wait for or request a full list",
            gap=True,
        )
