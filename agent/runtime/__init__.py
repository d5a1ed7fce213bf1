"""Running a gate: the daemon's composition root, systemd notify, logging and the
installer's ``check``. The one package that joins gate, store, sync and ``hw``; imported by
the demo and the CLI only."""
