"""Provisioning 100 gates from a CSV, and applying one bundle, against the raw library.

The run: ``gatectl provision --from gates.csv`` (100 gates: every row checked, then per
gate a P-256 key, an Ed25519-signed certificate, the config written and loaded back,
SHA256SUMS) and ``gate-agent provision apply`` on a --root. The floor: cryptography
alone making the same 100 keys and certificates. Target (issue 12): 100 gates in a few
seconds, i.e. under 5 s on one development core.

    .venv/bin/python benchmarks/bench_provision.py [--quick]
"""

from __future__ import annotations

import argparse
import contextlib
import datetime
import io
import shutil
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

from cryptography import x509
from cryptography.hazmat.primitives.asymmetric import ec, ed25519
from cryptography.x509.oid import NameOID

from agent.cli import gate_agent, gatectl

GATES = 100
TARGET_S = 5.0


def quiet(argv: list[str], main: object) -> int:
    with contextlib.redirect_stdout(io.StringIO()):
        return main(argv)  # type: ignore[operator,no-any-return]


def raw_certificates(count: int) -> None:
    ca_key = ed25519.Ed25519PrivateKey.generate()
    name = x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, "ca")])
    now = datetime.datetime.now(datetime.UTC)
    for i in range(count):
        key = ec.generate_private_key(ec.SECP256R1())
        (x509.CertificateBuilder().subject_name(
            x509.Name([x509.NameAttribute(NameOID.COMMON_NAME, f"gate-s-{i}")]))
         .issuer_name(name).public_key(key.public_key())
         .serial_number(x509.random_serial_number()).not_valid_before(now)
         .not_valid_after(now + datetime.timedelta(days=825)).sign(ca_key, None))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="one run instead of five")
    runs = 1 if parser.parse_args().quick else 5
    work = Path(tempfile.mkdtemp(prefix="bench-provision-"))
    try:
        assert quiet(["ca", "new", "--out", str(work / "ca")], gatectl.main) == 0
        assert quiet(["keys", "new", "--kid", "i1", "--out", str(work / "iss")],
                     gatectl.main) == 0
        assert quiet(["keys", "new", "--kid", "o1", "--out", str(work / "ops")],
                     gatectl.main) == 0
        csv = work / "gates.csv"
        csv.write_text("site,gate\n" + "".join(f"site-{i // 10},gate-{i % 10}\n"
                                                for i in range(GATES)))
        ours, raw, apply = [], [], []
        for run in range(runs):
            # Each run needs ids the CA has not issued yet: a fresh CA folder per run.
            shutil.rmtree(work / "ca")
            assert quiet(["ca", "new", "--out", str(work / "ca")], gatectl.main) == 0
            out = work / f"out{run}"
            t0 = time.perf_counter()
            assert quiet(["provision", "--from", str(csv), "--ca", str(work / "ca"),
                          "--issuers", str(work / "iss"), "--ops", str(work / "ops"),
                          "--broker", "mqtts://b.example:8883", "--out", str(out)],
                         gatectl.main) == 0
            ours.append(time.perf_counter() - t0)
            t0 = time.perf_counter()
            raw_certificates(GATES)
            raw.append(time.perf_counter() - t0)
            root = work / f"root{run}"
            (root / "etc").mkdir(parents=True)
            (root / "etc" / "passwd").write_text(
                "gate-agent:x:4242:4242::/var/lib/gate-agent:/usr/sbin/nologin\n")
            t0 = time.perf_counter()
            assert quiet(["provision", "apply", str(out / "site-0-gate-0"), "--root",
                          str(root)], gate_agent.main) == 0
            apply.append(time.perf_counter() - t0)
    finally:
        shutil.rmtree(work, ignore_errors=True)
    med, floor = statistics.median(ours), statistics.median(raw)
    print(f"\n## Provisioning {GATES} gates (median of {runs})\n")
    print("| step | seconds | per gate, ms |")
    print("|---|---|---|")
    print(f"| gatectl provision --from gates.csv | {med:.2f} | {med / GATES * 1000:.1f} |")
    print(f"| raw: cryptography keys + certificates only | {floor:.2f} | "
          f"{floor / GATES * 1000:.1f} |")
    print(f"| gate-agent provision apply (one bundle, --root) | "
          f"{statistics.median(apply):.3f} | |")
    print(f"\nprovision / raw certificates: {med / floor:.1f}x; target {TARGET_S:.0f} s "
          f"for {GATES} gates: {'met' if med < TARGET_S else 'MISSED'}")
    return 0 if med < TARGET_S else 1


if __name__ == "__main__":
    raise SystemExit(main())
