"""Hardware drivers behind small interfaces: the only package touching GPIO, cameras, serial."""
