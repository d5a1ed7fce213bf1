"""gate-agent: the courier-access daemon on a community gate's Raspberry Pi."""

__version__ = "0.1.0"
