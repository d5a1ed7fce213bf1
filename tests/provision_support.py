"""A district's centre side for provisioning tests: CA, issuer and ops keys, made with
gatectl itself under tmp_path."""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import pytest

from agent.cli import gatectl


@dataclass(frozen=True)
class Centre:
    root: Path
    ca: Path
    issuers: Path
    ops: Path

    def args(self, broker: str = "mqtts://broker.example:8883") -> list[str]:
        return ["--ca", str(self.ca), "--issuers", str(self.issuers), "--ops", str(self.ops),
                "--broker", broker]


def make_centre(root: Path, capsys: pytest.CaptureFixture[str] | None = None) -> Centre:
    centre = Centre(root, root / "ca", root / "issuers", root / "ops")
    assert gatectl.main(["ca", "new", "--out", str(centre.ca)]) == 0
    assert gatectl.main(["keys", "new", "--kid", "issuer-1", "--out", str(centre.issuers)]) == 0
    assert gatectl.main(["keys", "new", "--kid", "ops-1", "--out", str(centre.ops)]) == 0
    if capsys is not None:
        capsys.readouterr()
    return centre


def provision(centre: Centre, target: str, out: Path, *extra: str) -> Path:
    assert gatectl.main(["provision", target, *centre.args(), "--out", str(out), *extra]) == 0
    site, gate = target.split("/")
    return out / f"{site}-{gate}"
