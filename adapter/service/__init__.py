"""The service shell around the pure core: listeners, workers, HTTP API."""
