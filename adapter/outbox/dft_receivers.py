"""Read and check the DFT receivers file (`ADAPTER_DFT_RECEIVERS_FILE`): several billing
receivers, each its own outbox destination `dft:<name>`.

Why a file and not more environment variables: a site that posts to two systems (the
hospital billing system and a practice-management system, or a test and a production
interface engine) has two URLs, two profiles and two sets of TLS files; a TOML table per
receiver keeps each together. Checked strictly when the settings load, so a misspelt key
or a bad URL is one sentence naming the file and the key, before anything starts:
`receivers.toml: receiver.pm.url: must start with mllp:// or mllps://`.

```toml
[receiver.hospital]
url = "mllps://ie.example.org:6661"
profile = "generic-2.5.1"          # mappings/dft_profiles/<profile>.toml
ack_timeout_seconds = 30
ca_file = "tls/ie-ca.pem"          # relative paths: from the file's directory
cert_file = "tls/adapter.pem"
key_file = "tls/adapter-key.pem"

[receiver.practice]
url = "mllp://10.0.0.7:2600"
profile = "cpt-in-ft1-7-2.3"
```
"""

from __future__ import annotations

import re
import tomllib
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from adapter.outbox.dft_mllp import DftUrlError, MllpEndpoint

__all__ = ["DftReceiverSpec", "DftReceiversError", "load_dft_receivers", "parse_dft_receivers"]

DEFAULT_ACK_TIMEOUT = 30.0
_NAME = re.compile(r"[a-z0-9][a-z0-9_-]{0,39}")
_PROFILE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")
_KEYS = frozenset({"url", "profile", "ack_timeout_seconds", "ca_file", "cert_file", "key_file"})
_FILES = ("ca_file", "cert_file", "key_file")


class DftReceiversError(ValueError):
    """The receivers file is wrong; the message names the file and the key."""


@dataclass(frozen=True, slots=True)
class DftReceiverSpec:
    """One receiver as configured: its destination is `dft:<name>`."""

    name: str
    endpoint: MllpEndpoint
    profile: str
    ack_timeout_seconds: float = DEFAULT_ACK_TIMEOUT
    ca_file: str = ""
    cert_file: str = ""
    key_file: str = ""


def load_dft_receivers(path: Path) -> tuple[DftReceiverSpec, ...]:
    try:
        text = path.read_text(encoding="utf-8")
    except OSError as exc:
        raise DftReceiversError(f"{path}: cannot read ({exc.strerror})") from None
    return parse_dft_receivers(text, str(path), path.parent)


def parse_dft_receivers(text: str, where: str, base: Path) -> tuple[DftReceiverSpec, ...]:
    """Every receiver of the file, in file order; TLS files must exist."""
    try:
        data = tomllib.loads(text)
    except tomllib.TOMLDecodeError as exc:
        raise DftReceiversError(f"{where}: {exc}") from None
    extra = sorted(set(data) - {"receiver"})
    if extra:
        raise DftReceiversError(f"{where}: unknown key {extra[0]} (only [receiver.<name>] tables)")
    tables = data.get("receiver")
    if not isinstance(tables, dict) or not tables:
        raise DftReceiversError(f"{where}: no receiver: add a [receiver.<name>] table")
    return tuple(_receiver(name, table, where, base) for name, table in tables.items())


def _receiver(name: str, table: Any, where: str, base: Path) -> DftReceiverSpec:
    at = f"{where}: receiver.{name}"
    if not _NAME.fullmatch(name):
        raise DftReceiversError(f"{at}: a name is 1-40 of a-z 0-9 _ - (it names dft:{name})")
    if not isinstance(table, dict):
        raise DftReceiversError(f"{at}: must be a table of url, profile, ...")
    unknown = sorted(set(table) - _KEYS)
    if unknown:
        known = ", ".join(sorted(_KEYS))
        raise DftReceiversError(f"{at}.{unknown[0]}: unknown key (known: {known})")
    url = table.get("url")
    if not isinstance(url, str) or not url:
        raise DftReceiversError(f"{at}.url: required, mllp://host:port or mllps://host:port")
    try:
        endpoint = MllpEndpoint.parse(url)
    except DftUrlError as exc:
        raise DftReceiversError(f"{at}.url: {exc}") from None
    profile = table.get("profile", "generic-2.5.1")
    if not isinstance(profile, str) or not _PROFILE.fullmatch(profile):
        raise DftReceiversError(f"{at}.profile: a profile name of mappings/dft_profiles/")
    timeout = table.get("ack_timeout_seconds", DEFAULT_ACK_TIMEOUT)
    if isinstance(timeout, bool) or not isinstance(timeout, int | float) or timeout <= 0:
        raise DftReceiversError(f"{at}.ack_timeout_seconds: a positive number of seconds")
    files = {key: _file(table, key, at, base) for key in _FILES}
    if bool(files["cert_file"]) != bool(files["key_file"]):
        raise DftReceiversError(f"{at}: cert_file and key_file: set both or neither")
    if not endpoint.tls and any(files.values()):
        raise DftReceiversError(f"{at}: TLS files need an mllps:// url")
    return DftReceiverSpec(name, endpoint, profile, float(timeout), **files)


def _file(table: dict[str, Any], key: str, at: str, base: Path) -> str:
    value = table.get(key, "")
    if not isinstance(value, str):
        raise DftReceiversError(f"{at}.{key}: a file path")
    if not value:
        return ""
    path = Path(value) if Path(value).is_absolute() else base / value
    if not path.is_file():
        raise DftReceiversError(f"{at}.{key}: {path}: no such file")
    return str(path)
