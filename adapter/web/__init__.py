"""The HTTP edge: the aiohttp app (`app`, `state`, `security`, `serving`, `outcome`), the
API routes and the workbench pages (`routes/`)."""
