"""The one grammar of identifiers: site and gate ids, credential scopes, courier subjects.

Every identifier ends up in an MQTT topic, a log line or a console, and is compared
byte for byte, so two strings that look alike must not be two different ids and an id
must never act as a topic wildcard or a path. An identifier is:

- 1 to ``MAX_ID`` (64) characters, already in Unicode NFC (compared as stored);
- no ``/`` (topic and scope separator), ``+`` and ``#`` (MQTT wildcards), ``*`` (the
  command target pattern ``SITE/*``), no ``\\`` and not ``.`` or ``..`` (paths);
- no whitespace, control, format (zero-width, bidi), surrogate, private-use or
  unassigned characters (Unicode categories Z*, Cc, Cf, Cs, Co, Cn).

A scope pattern is ``SITE`` or ``SITE/GATE``, each part an identifier; the only pattern
with a wildcard is a command target ``SITE/*`` (every gate of a site). gatectl, the
config loader and the verifier all call these functions (docs/protocol.md, "Identifiers").
"""

from __future__ import annotations

import re
import unicodedata

MAX_ID = 64
RESERVED = frozenset("/+#*\\")
_BAD_CATEGORIES = ("Z", "Cc", "Cf", "Cs", "Co", "Cn")
# Fast path for the common case (printable ASCII), taken per entry of a revocation list.
_ASCII_ID = re.compile(rf"[!-~]{{1,{MAX_ID}}}")


def id_problem(value: object, what: str = "identifier") -> str | None:
    """What is wrong with ``value`` as an identifier, or None when it is one."""
    if not isinstance(value, str):
        return f"{what or 'id'} must be text, got {type(value).__name__}"
    if (_ASCII_ID.fullmatch(value) and value not in (".", "..")
            and not RESERVED.intersection(value)):
        return None
    lead = f"{what} {value[:MAX_ID]!r} " if what else ""
    if not 1 <= len(value) <= MAX_ID:
        return f"{lead}must be 1-{MAX_ID} characters, got {len(value)}"
    if value in (".", ".."):
        return f"{lead}is a path name, not an id"
    reserved = sorted(RESERVED & set(value))
    if reserved:
        return (f"{lead}must not contain {' '.join(reserved)} "
                "(topic separators, wildcards and path characters)")
    for ch in value:
        category = unicodedata.category(ch)
        if category.startswith(_BAD_CATEGORIES):
            return (f"{lead}holds U+{ord(ch):04X} (category {category}): no spaces, "
                    "control or invisible characters")
    if unicodedata.normalize("NFC", value) != value:
        return f"{lead}is not in Unicode NFC: normalise it before use"
    return None


def is_id(value: object) -> bool:
    return id_problem(value) is None


def scope_problem(pattern: object) -> str | None:
    """``SITE`` or ``SITE/GATE`` (a credential scope); None when valid."""
    if not isinstance(pattern, str):
        return f"scope must be text, got {type(pattern).__name__}"
    parts = pattern.split("/")
    if len(parts) > 2:
        return f"scope {pattern!r} is not SITE or SITE/GATE"
    for part, what in zip(parts, ("scope site", "scope gate"), strict=False):
        problem = id_problem(part, what)
        if problem:
            return problem
    return None


def target_problem(target: object) -> str | None:
    """A command target ``SITE/GATE`` or ``SITE/*``; None when valid."""
    if not isinstance(target, str):
        return f"target must be text, got {type(target).__name__}"
    site, sep, gate = target.partition("/")
    if not sep:
        return f"target {target!r} is not SITE/GATE (or SITE/* for a whole site)"
    problem = id_problem(site, "target site")
    if problem:
        return problem
    if gate == "*":
        return None
    return id_problem(gate, "target gate")
