"""The DFT^P03 receivers from settings, built once at start: per receiver its profile,
its TLS context, the queue the coder feeds and the MLLP sink the outbox worker delivers
through.

One receiver from `ADAPTER_DFT_URL` / `ADAPTER_DFT_PROFILE` (destination
`dft:<profile>`), or several from `ADAPTER_DFT_RECEIVERS_FILE` (destination
`dft:<name>` each, adapter/outbox/dft_receivers.py), as the settings check read them
(`config.CheckedSettings.dft_receivers`). A profile that does not load, or TLS files that
do not, stop the start with one sentence naming the setting (`StartupError`), as the
mapping tables do.
"""

from __future__ import annotations

import ssl
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Protocol

from adapter.core.mappings import Mappings
from adapter.dft_profiles_loader import load_dft_profile
from adapter.errors import EXIT_CONFIG, StartupError
from adapter.mappings_loader import MappingError
from adapter.outbox.dft_mllp import DftMllpSink, destination_for
from adapter.outbox.dft_queue import DftQueue
from adapter.outbox.dft_receivers import DftReceiverSpec
from adapter.setting_names import SettingName
from adapter.store.base import Store


class DftSettings(Protocol):
    """What the receivers' set-up reads of the settings (`config.Settings` has both): the
    outbox does not import the settings, which import the outbox's URL and file readers."""

    @property
    def mappings_dir(self) -> str: ...  # the profiles are `mappings_dir/dft_profiles/`

    @property
    def dft_receivers_file(self) -> str: ...  # set: errors name the file and the receiver


@dataclass(frozen=True, slots=True)
class DftReceiver:
    queue: DftQueue
    sink: DftMllpSink


def dft_receivers(
    specs: Sequence[DftReceiverSpec],
    settings: DftSettings,
    store: Store,
    mappings: Mappings,
    clock: Callable[[], datetime],
) -> tuple[DftReceiver, ...]:
    """One per configured receiver (none when no DFT is configured).

    `specs` are the receivers the settings check read (`CheckedSettings.dft_receivers`,
    carried by the `Runtime`): the receivers file is read once, there, not again here."""
    return tuple(_receiver(spec, settings, store, mappings, clock) for spec in specs)


def _receiver(
    spec: DftReceiverSpec,
    settings: DftSettings,
    store: Store,
    mappings: Mappings,
    clock: Callable[[], datetime],
) -> DftReceiver:
    setting = (
        SettingName.DFT_RECEIVERS_FILE if settings.dft_receivers_file else SettingName.DFT_PROFILE
    )
    where = f"DFT receiver {spec.name}: " if settings.dft_receivers_file else ""
    try:
        profile = load_dft_profile(Path(settings.mappings_dir), spec.profile, mappings)
    except MappingError as exc:
        raise StartupError(f"{where}DFT profile: {exc}", setting, EXIT_CONFIG) from exc
    destination = destination_for(spec.name)
    tls = _client_tls(spec, where, setting) if spec.endpoint.tls else None
    queue = DftQueue(store, profile, destination, mappings.code_labels, clock)
    sink = DftMllpSink(
        destination, spec.endpoint, tls, spec.ack_timeout_seconds, on_refused=queue.refused
    )
    return DftReceiver(queue, sink)


def _client_tls(spec: DftReceiverSpec, where: str, setting: SettingName) -> ssl.SSLContext:
    """Verifying client context: the receiver's certificate against `ca_file` (or the
    system's CAs), our client certificate when the receiver wants one."""
    try:
        context = ssl.create_default_context(cafile=spec.ca_file or None)
        if spec.cert_file:
            context.load_cert_chain(spec.cert_file, spec.key_file)
    except (ssl.SSLError, OSError) as exc:
        reason = exc.strerror if isinstance(exc, OSError) and exc.strerror else str(exc)
        cause = f"{where}DFT TLS files do not load: {reason}"
        name = setting if where else SettingName.DFT_CERT_FILE
        raise StartupError(cause, name, EXIT_CONFIG) from exc
    return context
