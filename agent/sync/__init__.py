"""MQTT: broker URL/TLS, topics, the link with backoff, the uplink drain, status and last
will, inbound routing. Imports ``agent.core`` (and the version); used by the gate's runtime
and by the centre."""
