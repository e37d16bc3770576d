"""The DFT^P03 receiver from settings, built once at start: its profile, its TLS context,
the queue the coder feeds and the MLLP sink the outbox worker delivers through.

A profile that does not load, or TLS files that do not, stop the start with one sentence
naming the setting (`StartupError`), as the mapping tables do.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path

from adapter.config import Settings
from adapter.core.mappings import Mappings
from adapter.dft_profiles_loader import load_dft_profile
from adapter.mappings_loader import MappingError
from adapter.outbox.dft_mllp import DftMllpSink, MllpEndpoint, destination_for
from adapter.service.dft_queue import DftQueue
from adapter.service.startup import EXIT_CONFIG, StartupError
from adapter.store.base import Store


@dataclass(frozen=True, slots=True)
class DftReceiver:
    queue: DftQueue
    sink: DftMllpSink


def dft_receiver(
    settings: Settings, store: Store, mappings: Mappings, clock: Callable[[], datetime]
) -> DftReceiver | None:
    """None when `ADAPTER_DFT_URL` is not set."""
    if not settings.dft_url:
        return None
    try:
        profile = load_dft_profile(Path(settings.mappings_dir), settings.dft_profile, mappings)
    except MappingError as exc:
        raise StartupError(f"DFT profile: {exc}", "ADAPTER_DFT_PROFILE", EXIT_CONFIG) from exc
    endpoint = MllpEndpoint.parse(settings.dft_url)  # checked with the settings
    destination = destination_for(profile.name)
    tls = _client_tls(settings) if endpoint.tls else None
    queue = DftQueue(store, profile, destination, mappings.code_labels, clock)
    sink = DftMllpSink(destination, endpoint, tls, settings.dft_ack_timeout_seconds)
    return DftReceiver(queue, sink)


def _client_tls(settings: Settings) -> ssl.SSLContext:
    """Verifying client context: the receiver's certificate against `dft_ca_file` (or the
    system's CAs), our client certificate when the receiver wants one."""
    try:
        context = ssl.create_default_context(cafile=settings.dft_ca_file or None)
        if settings.dft_cert_file:
            context.load_cert_chain(settings.dft_cert_file, settings.dft_key_file)
    except (ssl.SSLError, OSError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        cause = f"DFT TLS files do not load: {reason}"
        raise StartupError(cause, "ADAPTER_DFT_CERT_FILE", EXIT_CONFIG) from exc
    return context
