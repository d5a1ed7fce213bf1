"""Hardware drivers behind small interfaces: the only package touching GPIO, cameras, serial.
Imports ``agent.core`` only; used by ``agent.runtime``, the demo and the CLI."""
