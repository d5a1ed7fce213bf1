"""The embedded default: throwaway keys, config, codes and a rendered clip (gate-agent demo).
Imports everything below the CLI (runtime, gate, store, sync, hw); used by the CLI only."""
