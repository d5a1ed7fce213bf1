"""Everything signed or encoded on the wire: strict CBOR, keys, COSE_Sign1, credentials,
presentations, revocation lists, commands, time messages, QR text. Imports only
``agent.core``; the gate and the centre both import it."""
