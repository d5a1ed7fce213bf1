"""The installer's page on the gate: live preview with the decoder's view, relay test,
inputs, checklist and status, behind a one-time token (docs/installing.md).

Part of the daemon and off unless ``[web] enabled``; it reads only what the daemon
already has (the decode thread's frames through ``hw.preview.FrameTap``, the controller's
status, the door inputs) and changes the door only through the controller's queue.
Imported lazily by ``agent.runtime.daemon`` and by ``agent.cli`` (``gate-agent web
token``); it may import what agent.runtime may import (core, protocol, store, gate,
sync, hw).
"""
