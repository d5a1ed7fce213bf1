"""Languages and local time for the console's pages.

Messages are English msgids in the templates and code; ``locale/zh_CN/LC_MESSAGES/
console.po`` holds the Simplified Chinese catalogue, compiled in memory with Babel when
the console starts (no generated .mo file in the tree). Each language gets its own
Jinja2 environment with the i18n extension, so a request's language never leaks into
another's. Times are stored in UTC and shown in ``[web] time_zone``.
"""

from __future__ import annotations

import gettext
import io
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo

from babel.messages.mofile import write_mo
from babel.messages.pofile import read_po
from jinja2 import Environment, FileSystemLoader, select_autoescape

from agent.core.errors import UsageError
from agent.core.timefmt import parse_instant

HERE = Path(__file__).resolve().parent
LANGUAGES: dict[str, str] = {"zh-CN": "中文", "en": "English"}
CATALOGUES = {"zh-CN": "zh_CN"}


def load_translations(lang: str) -> gettext.NullTranslations:
    """The compiled catalogue for ``lang`` (English: the msgids themselves)."""
    folder = CATALOGUES.get(lang)
    if folder is None:
        return gettext.NullTranslations()
    po = HERE / "locale" / folder / "LC_MESSAGES" / "console.po"
    with po.open("rb") as f:
        catalog = read_po(f, locale=folder)
    buf = io.BytesIO()
    write_mo(buf, catalog)
    buf.seek(0)
    return gettext.GNUTranslations(buf)


class LocalTime:
    """UTC instants (Unix seconds or ISO 8601) shown in the centre's zone."""

    def __init__(self, zone: str) -> None:
        self.zone = ZoneInfo(zone)
        self.name = zone

    def moment(self, value: float | str | None) -> datetime | None:
        if value is None or value == "":
            return None
        if isinstance(value, str):
            try:
                value = parse_instant(value)
            except UsageError:
                return None
        return datetime.fromtimestamp(float(value), tz=UTC).astimezone(self.zone)

    def show(self, value: float | str | None, with_date: bool = True) -> str:
        moment = self.moment(value)
        if moment is None:
            return "–"
        return moment.strftime("%Y-%m-%d %H:%M:%S" if with_date else "%H:%M:%S")

    def parse_local(self, text: str) -> float | None:
        """A time typed in a form (``datetime-local``: no zone) is in the centre's zone;
        one with an offset or Z keeps it. None for empty; UsageError when unreadable."""
        text = text.strip()
        if not text:
            return None
        try:
            moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
        except ValueError:
            raise UsageError(f"time {text!r} is not a date and time such as "
                             "2026-12-01T08:30") from None
        if moment.tzinfo is None:
            moment = moment.replace(tzinfo=self.zone)
        return moment.timestamp()

    def day_start(self, now: float) -> float:
        """Midnight today in the centre's zone, as Unix seconds."""
        local = datetime.fromtimestamp(now, tz=UTC).astimezone(self.zone)
        return local.replace(hour=0, minute=0, second=0, microsecond=0).timestamp()

    def day_of(self, ts: float) -> str:
        return datetime.fromtimestamp(ts, tz=UTC).astimezone(self.zone).strftime("%Y-%m-%d")

    def hour_of(self, ts: float) -> int:
        return datetime.fromtimestamp(ts, tz=UTC).astimezone(self.zone).hour


def age(seconds: float | None) -> str:
    """A short duration: 45s, 12m, 3h, 2d."""
    if seconds is None:
        return "–"
    s = max(0.0, float(seconds))
    for size, unit in ((86400, "d"), (3600, "h"), (60, "m")):
        if s >= size:
            return f"{int(s // size)}{unit}"
    return f"{int(s)}s"


def environments(local: LocalTime,
                 extra: dict[str, Callable[..., Any]] | None = None) -> dict[str, Environment]:
    """One Jinja2 environment per language, sharing filters and the template folder."""
    envs: dict[str, Environment] = {}
    for lang in LANGUAGES:
        env = Environment(loader=FileSystemLoader(HERE / "templates"),
                          autoescape=select_autoescape(default=True, default_for_string=True),
                          extensions=["jinja2.ext.i18n"], trim_blocks=True, lstrip_blocks=True)
        translations = load_translations(lang)
        env.install_gettext_translations(translations, newstyle=True)  # type: ignore[attr-defined]
        env.filters["when"] = local.show
        env.filters["age"] = age
        env.globals["lang"] = lang
        env.globals["languages"] = LANGUAGES
        env.globals["zone"] = local.name
        env.globals["gettext_"] = translations.gettext
        env.globals.update(extra or {})
        envs[lang] = env
    return envs
