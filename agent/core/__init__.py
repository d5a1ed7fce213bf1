"""Shared core: config, errors, reasons, clocks and time formats, events, retry backoff
and the hardware interfaces. Imports nothing else of the project; every package (``hw``
too) may import it."""
