"""systemd notifications for the gate daemon: the notifier lives in ``agent.core.sdnotify``
so the centre service (which may not import runtime) shares it."""

from agent.core.sdnotify import Notifier

__all__ = ["Notifier"]
