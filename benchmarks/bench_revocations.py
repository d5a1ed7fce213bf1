"""Benchmark the compact revocation cache at 100k, 1M, 5M and 10M entries (issue 13).

    .venv/bin/python benchmarks/bench_revocations.py [--quick] [--sizes 100000,1000000]

For each size a signed full list (16-byte ids in the centre's canonical order, 1% courier
entries) is written to a file; then, each in a fresh process so RSS is its own:

- apply: file bytes -> verified -> table written and mapped (``gate-agent revocations
  apply FILE``'s path), wall time and peak RSS added over the process after its imports;
  the peak RSS of the whole process against the 512 MB of a Pi Zero 2 W at 10M;
- steady: a process that opens the installed cache and looks up 4,000 random misses and
  40 hits (scans are mostly of valid credentials): RSS added (the mapped pages the
  lookups touched count in it), and the same after 2,000 more hits, the worst case where
  every page of the ids' second halves is touched; the per-call lookup time (median of
  25 batches of 2,000, a courier entry looked up too, as on a scan);
- at 1M, the same list in descending order (older centres did not sort), for context;
- the raw floor in the same run: cbor2.loads + one libsodium verify + a Python set of the
  ids (time, peak RSS), and a set lookup (bytes.fromhex + ``in``) per call.

Targets at 1M: apply <= 1.0 s, peak added <= 64 MB, steady <= 16 MB, lookups <= 1.5 µs;
at 10M the whole process peaks within 512 MB. Exits 1 on a miss.
"""

from __future__ import annotations

import argparse
import json
import os
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from targets import Row, at_most, report  # noqa: E402

from agent.protocol import cose  # noqa: E402
from agent.protocol.keys import load_public_key, load_signing_key, write_keypair  # noqa: E402
from agent.protocol.revocation import DOC_TYPE  # noqa: E402

ISSUED = 1_790_000_000
MB = 1e6


def ids_of(n: int, ascending: bool = True) -> bytearray:
    """n distinct 16-byte ids spread over the whole id space, ascending or descending."""
    step = (1 << 128) // n
    out = bytearray()
    for i in range(n) if ascending else reversed(range(n)):
        out += (i * step + (i * 2654435761 % step)).to_bytes(16, "big")
    return out


def cbor_head(major: int, value: int) -> bytes:
    if value < 24:
        return bytes([major << 5 | value])
    for info, width in ((24, 1), (25, 2), (26, 4), (27, 8)):
        if value < 1 << (8 * width):
            return bytes([major << 5 | info]) + value.to_bytes(width, "big")
    raise ValueError(value)


def text(value: str) -> bytes:
    raw = value.encode()
    return cbor_head(3, len(raw)) + raw


def signed_list(n: int, key_path: Path, ascending: bool = True) -> bytes:
    """The bytes ``sign_revocation_list`` makes, built without an object per entry (or,
    not ascending, what an older centre signed: the same ids in another order)."""
    subs = n // 100
    count = n - subs
    ids = ids_of(count, ascending)
    body = bytearray(cbor_head(5, 6))
    body += text("k") + text("full") + text("v") + cbor_head(0, 1) + text("b") + b"\xf6"
    body += text("t") + cbor_head(0, ISSUED) + text("a") + cbor_head(4, n)
    framed = bytearray(17 * count)
    framed[0::17] = b"\x50" * count
    for j in range(16):
        framed[1 + j :: 17] = ids[j::16]
    body += framed
    for i in range(subs):
        body += b"\x82" + text(f"rider-{i:08d}") + cbor_head(0, ISSUED - 86400)
    body += text("r") + cbor_head(4, 0)
    message = cose.sign1(bytes(body), load_signing_key(key_path), "ops1", typ=DOC_TYPE)
    return cose.encode(message)


CHILD_COMMON = """
import json, sys, time
def rss(field='VmRSS'):
    for line in open('/proc/self/status'):
        if line.startswith(field + ':'):
            return int(line.split()[1]) * 1024
from pathlib import Path
"""

APPLY = CHILD_COMMON + """
from agent.protocol.keys import load_keyring
from agent.protocol.revstream import FILE_MAX_BYTES, FILE_MAX_ENTRIES, parse_compact_list
from agent.store import RevocationStore
keys, state, path = Path(sys.argv[1]), Path(sys.argv[2]), Path(sys.argv[3])
keyring = load_keyring(keys / 'issuers', keys / 'ops')
store = RevocationStore(state)
base = rss()
t0 = time.perf_counter()
data = path.read_bytes()
lst = parse_compact_list(data, keyring, time.time(), max_bytes=FILE_MAX_BYTES,
                         max_entries=FILE_MAX_ENTRIES)
del data
store.apply(lst)
del lst
elapsed = time.perf_counter() - t0
print(json.dumps({'s': elapsed, 'peak_added': rss('VmHWM') - base, 'peak': rss('VmHWM'),
                  'entries': store.entries}))
"""

STEADY = CHILD_COMMON + """
import random, statistics
from agent.store import RevocationStore
state, n = Path(sys.argv[1]), int(sys.argv[2])
base, anon0 = rss(), rss('RssAnon')
store = RevocationStore(state)
rng = random.Random(5)
step = (1 << 128) // (n - n // 100)
def revoked(i): return (i * step + (i * 2654435761 % step)).to_bytes(16, 'big').hex()
hits = [revoked(rng.randrange(n - n // 100)) for _ in range(2000)]
misses = [rng.randbytes(16).hex() for _ in range(4000)]
assert not any(store.is_revoked(m, 'nobody', 0) for m in misses)
assert all(store.is_revoked(h, 'nobody', 0) for h in hits[:40])
out = {'steady': rss() - base, 'anon': rss('RssAnon') - anon0}
for label, probes in (('hit', hits), ('miss', misses[:2000])):
    batches = []
    for _ in range(25):
        t0 = time.perf_counter()
        for p in probes:
            store.is_revoked(p, 'rider-x', 1_800_000_000)
        batches.append((time.perf_counter() - t0) / len(probes) * 1e6)
    out[label] = statistics.median(batches)
out['after'] = rss() - base
print(json.dumps(out))
"""

RAW = CHILD_COMMON + """
import cbor2, nacl.signing, random, statistics
public, path = bytes.fromhex(sys.argv[1]), Path(sys.argv[2])
base = rss()
t0 = time.perf_counter()
signed = path.read_bytes()
protected, _u, payload, signature = cbor2.loads(signed)
nacl.signing.VerifyKey(public).verify(cbor2.dumps(['Signature1', protected, b'', payload]),
                                      signature)
del signed
body = cbor2.loads(payload)
del payload
ids = {e if isinstance(e, bytes) else e[0] for e in body['a']}
del body
elapsed = time.perf_counter() - t0
some = [i for _, i in zip(range(50000), ids) if isinstance(i, bytes)]
probes = [i.hex() for i in random.Random(5).sample(some, 2000)]
batches = []
for _ in range(25):
    t1 = time.perf_counter()
    for p in probes:
        bytes.fromhex(p) in ids
    batches.append((time.perf_counter() - t1) / len(probes) * 1e6)
print(json.dumps({'s': elapsed, 'peak_added': rss('VmHWM') - base,
                  'lookup': statistics.median(batches)}))
"""


def child(code: str, *args: object) -> dict[str, float]:
    out = subprocess.run([sys.executable, "-c", code, *map(str, args)], capture_output=True,
                         text=True, cwd=ROOT, env={**os.environ, "PYTHONPATH": str(ROOT)})
    if out.returncode != 0:
        raise SystemExit(f"benchmark child failed: {out.stderr.strip()[-2000:]}")
    result: dict[str, float] = json.loads(out.stdout)
    return result


def bench_size(folder: Path, n: int, rows: list[Row], raw_too: bool) -> None:
    keys = folder / "keys"
    if not keys.exists():
        write_keypair(keys / "ops", "ops1")
        (keys / "issuers").mkdir()
    signed = folder / f"list-{n}.cbor"
    signed.write_bytes(signed_list(n, keys / "ops" / "ops1.key"))
    public = load_public_key(keys / "ops" / "ops1.pub")
    state = folder / f"state-{n}"
    applied = child(APPLY, keys, state, signed)
    assert applied["entries"] == n, applied
    steady = child(STEADY, state, n)
    raw = child(RAW, public.hex(), signed) if raw_too else None
    size = signed.stat().st_size
    signed.unlink()
    unsorted = None
    if n == 1_000_000:  # a list not in the table's order: sorted on the gate, no target
        signed.write_bytes(signed_list(n, keys / "ops" / "ops1.key", ascending=False))
        unsorted = child(APPLY, keys, folder / "state-unsorted", signed)
        signed.unlink()
    one_m, ten_m = n == 1_000_000, n == 10_000_000
    label = f"{n / 1e6:g}M" if n >= 1_000_000 else f"{n // 1000}k"
    rows.append(Row(f"{label}: apply, signed file ({size / MB:.0f} MB) to ready",
                    f"{applied['s']:.2f} s", "<= 1.0 s" if one_m else "",
                    f"cbor2 + verify + set {raw['s']:.2f} s" if raw else "",
                    at_most(applied["s"], 1.0) if one_m else None))
    rows.append(Row(f"{label}: apply, peak RSS added",
                    f"{applied['peak_added'] / MB:.0f} MB (process {applied['peak'] / MB:.0f})",
                    "<= 64 MB" if one_m else ("process <= 512 MB" if ten_m else ""),
                    f"{raw['peak_added'] / MB:.0f} MB" if raw else "",
                    at_most(applied["peak_added"] / MB, 64) if one_m
                    else (at_most(applied["peak"] / MB, 512) if ten_m else None)))
    rows.append(Row(f"{label}: steady RSS added (open, 4,000 misses, 40 hits)",
                    f"{steady['steady'] / MB:.1f} MB (anon {steady['anon'] / MB:.1f})",
                    "<= 16 MB" if one_m else "", "",
                    at_most(steady["steady"] / MB, 16) if one_m else None))
    rows.append(Row(f"{label}: RSS added after 2,000 more hits (worst case)",
                    f"{steady['after'] / MB:.1f} MB"))
    for kind in ("hit", "miss"):
        rows.append(Row(f"{label}: lookup ({kind}), per call", f"{steady[kind]:.2f} µs",
                        "<= 1.5 µs" if one_m else "",
                        f"set {raw['lookup']:.2f} µs" if raw else "",
                        at_most(steady[kind], 1.5) if one_m else None))
    if unsorted is not None:
        rows.append(Row("1M, not in order (older centre): apply, peak RSS added",
                        f"{unsorted['s']:.2f} s, {unsorted['peak_added'] / MB:.0f} MB"))


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--quick", action="store_true", help="100k and 1M only")
    parser.add_argument("--sizes", help="comma-separated entry counts")
    parser.add_argument("--dir", type=Path, help="folder for the temp files (default: tmp)")
    args = parser.parse_args()
    if args.sizes:
        sizes = [int(s) for s in args.sizes.split(",")]
    else:
        sizes = [100_000, 1_000_000] + ([] if args.quick else [5_000_000, 10_000_000])
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(dir=args.dir) as tmp:
        for n in sizes:
            started = time.perf_counter()
            bench_size(Path(tmp), n, rows, raw_too=n <= 10_000_000)
            print(f"{n:,} entries measured in {time.perf_counter() - started:.0f} s",
                  file=sys.stderr)
    print(f"load average: {' '.join(f'{x:.2f}' for x in os.getloadavg())}")
    return report("bench_revocations", rows)


if __name__ == "__main__":
    raise SystemExit(main())
