"""The console's read pages: fleet, entries (with CSV and the live feed), courier,
revocations, gate, overview, audit. Every handler here is wrapped by ``app.guard``."""

from __future__ import annotations

import asyncio
import csv
import io
import json
from collections.abc import AsyncIterator
from typing import Any
from urllib.parse import quote, urlencode

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response, StreamingResponse

from agent.centre.store import queries
from agent.centre.store.db import Database
from agent.centre.web import records, views
from agent.centre.web.app import console_of, current_user
from agent.centre.web.i18n import age
from agent.centre.web.views import EntryFilter
from agent.core.errors import UsageError

FEED_POLL_S = 0.25
FEED_OVERLAP_S = 5.0  # rows committed late by another writer are still caught, once
FEED_KEEPALIVE_S = 15.0
FEED_BATCH = 5000
COURIER_DAYS = 31


async def home(request: Request) -> Response:
    return RedirectResponse("/fleet", status_code=303)


async def fleet(request: Request) -> Response:
    console = console_of(request)
    site = request.query_params.get("site") or None
    now = console.clock()

    def load(db: Database) -> tuple[list[dict[str, Any]], list[str]]:
        rows = [r for r in queries.gates(db, now) if site is None or r["site"] == site]
        # Problems first, and of those the gates that are down before the rest.
        rows.sort(key=lambda r: (not r["problems"], bool(r["online"])))
        return rows, views.sites(db)

    rows, sites = await console.pool.run(load)
    show = console.local.show
    for r in rows:  # here once, not through template filters 1,000 times each
        r["href"] = f"/gate/{quote(r['site'], safe='')}/{quote(r['gate'], safe='')}"
        r["since_shown"], r["last_seen_shown"] = show(r["since"]), show(r["last_seen"])
        r["age_shown"] = age(r["revocations_age_s"])
        clock = r["clock"]
        r["clock_trusted"] = clock.get("trusted") if isinstance(clock, dict) else None
        alarms = r["alarms"]
        r["alarm_names"] = ", ".join(map(str, alarms.keys() if isinstance(alarms, dict)
                                         else alarms))
    return await run_in_threadpool(
        console.render, request, "fleet.html", gates=rows, sites=sites, site=site or "",
        problems=sum(1 for r in rows if r["problems"]))


def entry_filter(request: Request) -> EntryFilter:
    """The search form's values; UsageError names the field that is wrong."""
    q = request.query_params
    local = console_of(request).local
    decision = q.get("decision") or None
    if decision not in (None, "granted", "denied"):
        raise UsageError("decision must be granted or denied")
    page = q.get("page", "1")
    if not page.isdigit() or int(page) < 1:
        raise UsageError("page must be a whole number from 1")
    return EntryFilter(sub=q.get("sub", "").strip() or None,
                       site=q.get("site", "").strip() or None,
                       gate=q.get("gate", "").strip() or None,
                       since=local.parse_local(q.get("since", "")),
                       until=local.parse_local(q.get("until", "")),
                       decision=decision,  # type: ignore[arg-type]
                       reason=q.get("reason", "").strip() or None, page=int(page))


async def entries(request: Request) -> Response:
    console = console_of(request)
    try:
        flt = entry_filter(request)
    except UsageError as exc:
        return console.render(request, "entries.html", 400, error=str(exc), rows=[],
                              more=False, flt=EntryFilter(), form=request.query_params)
    rows, more = await console.pool.run(views.entries_page, flt)
    return console.render(request, "entries.html", rows=rows, more=more, flt=flt,
                          form=request.query_params, error=None,
                          prev_q=_page_query(request, flt.page - 1) if flt.page > 1 else "",
                          next_q=_page_query(request, flt.page + 1) if more else "")


def _page_query(request: Request, page: int) -> str:
    params = [(k, v) for k, v in request.query_params.multi_items() if k != "page"]
    return urlencode([*params, ("page", str(page))])


async def entries_csv(request: Request) -> Response:
    """Exactly the rows the page with the same query shows."""
    console = console_of(request)
    try:
        flt = entry_filter(request)
    except UsageError as exc:
        return Response(str(exc) + "\n", status_code=400, media_type="text/plain")
    rows, _more = await console.pool.run(views.entries_page, flt)
    out = io.StringIO()
    writer = csv.writer(out)
    writer.writerow(["time", *views.ENTRY_FIELDS[1:]])
    for r in rows:
        writer.writerow([console.local.show(r["at"]), *(_csv(r[f]) for f in
                                                        views.ENTRY_FIELDS[1:-1]),
                         console.local.show(r["received_at"])])
    await console.audit(request, "export_csv", str(request.url.query) or "-", True,
                        f"{len(rows)} rows")
    return Response(out.getvalue(), media_type="text/csv; charset=utf-8",
                    headers={"content-disposition": 'attachment; filename="entries.csv"'})


def _csv(value: Any) -> str:
    if value is None:
        return ""
    if isinstance(value, bool):
        return "true" if value else "false"
    text = str(value)
    # A cell starting with = + - @ is a formula to a spreadsheet: keep it text.
    return "'" + text if text[:1] in ("=", "+", "-", "@") else text


async def feed(request: Request) -> Response:
    """Server-sent events: each new entry matching the page's filter, as JSON."""
    console = console_of(request)
    try:
        flt = entry_filter(request)
    except UsageError as exc:
        return Response(str(exc) + "\n", status_code=400, media_type="text/plain")
    start = await console.pool.run(views.latest_received)

    async def events() -> AsyncIterator[str]:
        cursor = start
        sent: dict[tuple[str, str, int], float] = {}
        quiet = 0.0
        yield "retry: 2000\n\n"
        while not console.stopping.is_set():
            if await request.is_disconnected():
                return
            rows = await console.pool.run(views.entries_since, cursor - FEED_OVERLAP_S,
                                          FEED_BATCH)
            if len(rows) == FEED_BATCH:  # a burst: the overlap alone may fill a batch
                rows = await console.pool.run(views.entries_since, cursor, FEED_BATCH)
            for row in rows:
                key = (row["site"], row["gate"], row["seq"])
                if key in sent:
                    continue
                sent[key] = row["received_at"]
                cursor = max(cursor, float(row["received_at"]))
                if flt.matches(row):
                    quiet = 0.0
                    yield f"data: {json.dumps(_feed_row(console.local.show, row))}\n\n"
            for key in [k for k, at in sent.items() if at < cursor - 2 * FEED_OVERLAP_S]:
                del sent[key]
            await asyncio.sleep(FEED_POLL_S)
            quiet += FEED_POLL_S
            if quiet >= FEED_KEEPALIVE_S:
                quiet = 0.0
                if await current_user(request) is None:  # signed out or disabled meanwhile
                    return
                yield ": keepalive\n\n"

    return StreamingResponse(events(), media_type="text/event-stream",
                             headers={"x-accel-buffering": "no"})


def _feed_row(show: Any, row: dict[str, Any]) -> dict[str, Any]:
    return {**{k: row[k] for k in ("site", "gate", "seq", "kind", "granted", "reason", "sub",
                                   "method", "door")},
            "time": show(row["at"]), "received": row["received_at"]}


async def courier(request: Request) -> Response:
    console = console_of(request)
    sub = request.path_params["sub"]
    since = console.clock() - COURIER_DAYS * 86400
    data = await console.pool.run(views.courier, sub, since, console.local.day_of)
    return console.render(request, "courier.html", c=data, days=COURIER_DAYS,
                          notice=request.query_params.get("notice"))


async def revocations(request: Request) -> Response:
    console = console_of(request)
    data = await console.pool.run(lambda db: queries.revocations(db, history=200))
    return console.render(request, "revocations.html", r=data)


async def gate(request: Request) -> Response:
    console = console_of(request)
    site, name = request.path_params["site"], request.path_params["gate"]
    now = console.clock()

    def load(db: Database) -> dict[str, Any]:
        state = next((g for g in queries.gates(db, now) if (g["site"], g["gate"]) ==
                      (site, name)), None)
        return {"state": state, "history": records.gate_history(db, site, name),
                "entries": views.gate_entries(db, site, name),
                "door_alarms": views.gate_alarms(db, site, name),
                "commands": records.commands_for(db, site, name)}

    data = await console.pool.run(load)
    return console.render(request, "gate.html", site=site, gate_name=name, **data,
                          notice=request.query_params.get("notice"))


async def overview(request: Request) -> Response:
    console = console_of(request)
    site = request.query_params.get("site") or None
    start = console.local.day_start(console.clock())

    def load(db: Database) -> tuple[list[dict[str, Any]], list[str]]:
        return views.overview(db, start, console.local.hour_of, site), views.sites(db)

    data, sites = await console.pool.run(load)
    return console.render(request, "overview.html", sites_data=data, sites=sites,
                          site=site or "", since=start)


async def audit(request: Request) -> Response:
    console = console_of(request)
    rows = await console.pool.run(records.recent_audit, 500)
    return console.render(request, "audit.html", rows=rows)
