"""Hardware drivers behind small interfaces (the only package that touches GPIO, cameras, serial)."""
