"""The command lines ``gate-agent``, ``gatectl`` and ``gate-centre``: argument parsing and
output only. May import every package; nothing imports it."""
