"""The workbench: server-rendered pages for billers, served by the service's own aiohttp app."""
