"""The console's forms that change something: sign in and out, language, revoke and
unrevoke a courier, and gate commands (open, mode, resend). Each change is a GET that
shows a confirmation form and a POST (guarded: role and CSRF token) that does it, and
each outcome, refused or done, is written to the audit log with the staff member."""

from __future__ import annotations

from urllib.parse import quote

from starlette.concurrency import run_in_threadpool
from starlette.requests import Request
from starlette.responses import RedirectResponse, Response

from agent.centre.store.revocations import NothingToChange
from agent.centre.web import records
from agent.centre.web.actions import change_courier, command_args, send_command
from agent.centre.web.app import LANG_COOKIE, console_of, csrf_token, current_user
from agent.centre.web.auth import same_token, verify_password
from agent.centre.web.i18n import LANGUAGES
from agent.core.errors import GateError

MAX_REASON = 200


def _safe_next(value: str | None) -> str:
    """Only a path on this site (never //host or a scheme): no open redirect."""
    if not value or not value.startswith("/") or value.startswith("//") or "\\" in value:
        return "/fleet"
    return value


async def login(request: Request) -> Response:
    console = console_of(request)
    _ = console.gettext(request)
    nxt = _safe_next(request.query_params.get("next"))
    if request.method == "GET":
        if await current_user(request) is not None:
            return RedirectResponse(nxt, status_code=303)
        return console.render(request, "login.html", next=nxt, error=None)
    form = await request.form()
    name = str(form.get("name", "")).strip()[:64]
    password = str(form.get("password", ""))
    nxt = _safe_next(str(form.get("next", "")) or None)
    addr = request.client.host if request.client else "?"
    if not same_token(request.session.get("csrf"), form.get("csrf")):
        await console.audit(request, "login_refused", name or "-", False,
                            "missing or stale CSRF token", who=name or "-")
        return console.render(request, "login.html", 403, next=nxt,
                              error=_("The page was too old. Please sign in again."))
    keys = (f"name:{name}", f"addr:{addr}")
    wait = console.limiter.blocked_for(*keys)
    if wait > 0:
        await console.audit(request, "login_rate_limited", name, False,
                            f"{wait:.0f} s to wait", who=name or "-")
        return console.render(request, "login.html", 429, next=nxt, error=_(
            "Too many failed sign-ins. Wait a few minutes and try again."))
    user = await console.pool.run(records.get_user, name) if name else None
    good = await run_in_threadpool(verify_password, user.hash if user else None, password)
    if not good or user is None or user.disabled:
        console.limiter.failed(*keys)
        detail = "disabled account" if user is not None and user.disabled and good else \
            "wrong name or password"
        await console.audit(request, "login_failed", name or "-", False, detail,
                            who=name or "-")
        return console.render(request, "login.html", 401, next=nxt,
                              error=_("Wrong name or password."))
    console.limiter.succeeded(keys[0])
    request.session.clear()
    request.session.update({"user": user.name, "changed": user.changed_at,
                            "since": console.clock()})
    csrf_token(request)  # a fresh token for the new session
    request.state.user = user
    await console.audit(request, "login", user.name, True)
    return RedirectResponse(nxt, status_code=303)


async def logout(request: Request) -> Response:
    console = console_of(request)
    form = await request.form()
    user = await current_user(request)
    if user is not None and same_token(request.session.get("csrf"), form.get("csrf")):
        request.state.user = user
        await console.audit(request, "logout", user.name, True)
        request.session.clear()
    return RedirectResponse("/login", status_code=303)


async def language(request: Request) -> Response:
    code = request.path_params["code"]
    response = RedirectResponse(_safe_next(request.query_params.get("next")), status_code=303)
    if code in LANGUAGES:
        response.set_cookie(LANG_COOKIE, code, max_age=365 * 86400, httponly=True,
                            samesite="lax")
    return response


async def courier_change(request: Request) -> Response:
    console = console_of(request)
    _ = console.gettext(request)
    sub, action = request.path_params["sub"], request.path_params["action"]
    if action not in ("revoke", "unrevoke"):
        return console.render(request, "error.html", 404, title=_("Not found"),
                              message=f"no action {action!r}")
    if request.method == "GET":
        return console.render(request, "confirm_courier.html", sub=sub, action=action)
    form = await request.form()
    reason = str(form.get("reason", "")).strip()[:MAX_REASON] or None
    user = request.state.user
    now = console.clock()
    # "before_now": only the credentials issued so far (a new one, issued later, works).
    before = int(now) if action == "revoke" and form.get("scope") == "before_now" else None
    try:
        change, published = await console.pool.run(
            change_courier, console.signer, console.publish, action, sub, reason,
            f"console:{user.name}", now, before)
    except NothingToChange as exc:
        await console.audit(request, action, f"sub:{sub}", False, str(exc))
        return _back(f"/courier/{quote(sub, safe='')}", str(exc))
    except (GateError, ValueError) as exc:
        await console.audit(request, action, f"sub:{sub}", False, str(exc))
        return console.render(request, "error.html", 400, title=_("Refused"), message=str(exc))
    await console.audit(request, action, f"sub:{sub}", True,
                        f"version {change.version}" + ("" if published else ", not yet published"))
    note = (_("Done: revocation list version %(v)s.") % {"v": change.version} +
            ("" if published else " " + _("The broker is down: it is published when it is "
                                          "back.")))
    return _back(f"/courier/{quote(sub, safe='')}", note)


def _back(path: str, notice: str) -> Response:
    return RedirectResponse(f"{path}?notice={quote(notice)}", status_code=303)


async def gate_command(request: Request) -> Response:
    console = console_of(request)
    _ = console.gettext(request)
    site, gate = request.path_params["site"], request.path_params["gate"]
    here = f"/gate/{quote(site, safe='')}/{quote(gate, safe='')}"
    if request.method == "GET":
        values = dict(request.query_params)
    else:
        values = {k: str(v) for k, v in (await request.form()).items()}
    action = values.get("action", "")
    try:
        args = command_args(action, values)
    except ValueError as exc:
        return console.render(request, "error.html", 400, title=_("Refused"), message=str(exc))
    if request.method == "GET" or values.get("confirm") != "yes":
        return console.render(request, "confirm_command.html", site=site, gate=gate,
                              action=action, args=args, values=values)
    user = request.state.user
    target = f"{site}/{gate}"
    try:
        cmd_id, published = await console.pool.run(
            send_command, console.signer, console.publish, site, gate, action, args,
            f"console:{user.name}", console.clock())
    except (GateError, ValueError) as exc:
        await console.audit(request, f"cmd_{action}", target, False, str(exc))
        return console.render(request, "error.html", 400, title=_("Refused"), message=str(exc))
    await console.audit(request, f"cmd_{action}", target, published,
                        f"id {cmd_id} {args}" + ("" if published else " (broker down)"))
    note = _("Command sent; the gate's answer appears below.") if published else \
        _("The broker is down: the command was not sent.")
    return _back(here, note)
