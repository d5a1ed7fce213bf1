"""The embedded default: throwaway keys, config, codes and a rendered clip (gate-agent demo)."""
