"""Operator routes under `/admin`: what an interface analyst does to a running service.

`POST /admin/reload-mappings` loads the site tables again without a restart (as SIGHUP
does): validated first, the old tables kept when the new ones fail, the answer naming
the file and line. Behind the bearer tokens like every route that is not a probe; a
read-only client may not reload (it is a write).
"""

from __future__ import annotations

import structlog
from aiohttp import web

from adapter.service.app import STATE
from adapter.service.operation_outcome import ApiError, Issue

log = structlog.get_logger()


async def reload_mappings(request: web.Request) -> web.Response:
    """200 with the directory when the new tables are in use; 422 naming the bad row."""
    state = request.app[STATE]
    error = await state.reload_mappings()
    if error is not None:
        text = f"mapping tables not reloaded, the previous ones stay in use: {error}"
        raise ApiError(422, [Issue("invalid", text)])
    return web.json_response(
        {"result": "reloaded", "directory": state.settings.mappings_dir},
        headers={"Cache-Control": "no-store"},
    )
