"""The listeners: the MLLP server and the accept loop under limits (HTTP is adapter.web)."""
