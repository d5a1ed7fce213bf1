"""The centre side: staff broker sessions (gatectl's command round trips and watch) and the
``gate-centre`` service. Imports core, protocol and sync; never the gate's packages. Used by
the CLI."""
