"""The gate's logic: the controller loop, the one rulebook of a scan and the scan handler
that applies it, modes, rate limit, door monitor, state alarms, timekeeper and the handlers
of centre messages. Imports core, protocol and store, never hardware libraries, sync or the
centre; used by ``agent.runtime``, the demo and the CLI."""
