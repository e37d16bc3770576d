"""The workbench's pages, one module per page (wired by `adapter.web.app_ui`)."""
