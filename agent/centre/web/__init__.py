"""The centre console: a web application for centre staff on top of ``gate-centre``
(Starlette + Jinja2 served by uvicorn inside ``gate-centre run`` when ``[web] bind`` is set).

Part of ``agent.centre``: imports core, protocol, sync and the rest of ``agent.centre``.
Imported by ``agent.centre.service`` (only ``records``, which needs no web framework) and
by the CLI. Importing this package itself pulls in no web framework: ``app`` and
``server`` do, and say what to install when it is missing.
"""
