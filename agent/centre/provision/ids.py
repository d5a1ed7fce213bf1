"""Site and gate ids as provisioning accepts them.

An id becomes an MQTT topic level, a certificate Common Name (``gate-SITE-GATE``), a
Mosquitto ACL line and a folder name on a FAT partition, so provisioning refuses what
would break any of them: ``/ + # *``, whitespace, control and invisible (format,
zero-width) characters, backslash and a leading dot or dash. The gate's config accepts
the wider grammar of ``agent.core.ids`` (which this rule also applies); this is the
stricter rule for ids that are about to be issued.
"""

from __future__ import annotations

import unicodedata

from agent.core.errors import UsageError
from agent.core.ids import id_problem as core_id_problem

_FORBIDDEN = frozenset("/+#*\\\"'`$%:;<>|?")
MAX_CN = 64  # X.520 upper bound for a Common Name


def id_problem(value: str) -> str | None:
    """Why ``value`` cannot be a site or gate id, or None when it can."""
    if not value:
        return "is empty"
    if value[0] in ".-":
        return f"starts with {value[0]!r}"
    for char in value:
        category = unicodedata.category(char)
        if char in _FORBIDDEN:
            return f"contains {char!r} (MQTT wildcard, topic separator or shell character)"
        if char.isspace() or category.startswith("Z"):
            return "contains whitespace"
        if category in ("Cc", "Cf", "Cs", "Co", "Cn"):
            return f"contains the invisible or control character U+{ord(char):04X}"
    # On top of the one grammar every part checks (agent.core.ids: length, NFC, ...).
    return core_id_problem(value, "")


def check_gate(site: str, gate: str) -> tuple[str, str]:
    """The pair, or UsageError naming which id is wrong and how."""
    for what, value in (("site", site), ("gate", gate)):
        problem = id_problem(value)
        if problem:
            raise UsageError(
                f"{what} id {value!r} {problem}: use letters, digits, '-', '_' or '.'"
            )
    if len(common_name(site, gate)) > MAX_CN:
        raise UsageError(
            f"{site}/{gate}: certificate name {common_name(site, gate)!r} is longer than "
            f"{MAX_CN} characters: use shorter site or gate ids"
        )
    return site, gate


def parse_target(text: str) -> tuple[str, str]:
    """``SITE/GATE`` from the command line, checked."""
    site, sep, gate = text.partition("/")
    if not sep or not site or not gate:
        raise UsageError(f"{text!r} is not SITE/GATE (for example binhai-0001/north-1)")
    return check_gate(site, gate)


def common_name(site: str, gate: str) -> str:
    """The gate's certificate CN, its MQTT client id and ACL user name."""
    return f"gate-{site}-{gate}"


def bundle_name(site: str, gate: str) -> str:
    """The bundle's folder name in the output folder."""
    return f"{site}-{gate}"
