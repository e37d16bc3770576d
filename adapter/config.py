"""Service settings: environment variables `ADAPTER_*` over an optional TOML file over defaults.

Read once at start-up and validated; a bad value stops the service with a
message naming the variable (or TOML key) and what it accepts. Every field is
documented in the README's settings table; `charge-adapter settings` prints the
effective values (secrets masked). The check loads the TLS files and tokens the
settings name, and reads the DFT receivers file; `load_checked` keeps them all
(`CheckedSettings`) so start-up does not load them again.
"""

from __future__ import annotations

import difflib
import importlib.util
import os
import socket
import tomllib
from collections.abc import Callable, Mapping
from dataclasses import dataclass, field, fields, replace
from datetime import time
from pathlib import Path
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

from adapter.core.mappings import SETTINGS, Setting
from adapter.core.options import CodingOptions, ZOrder
from adapter.credentials import Credentials, loaded_or_problems
from adapter.errors import SettingsError
from adapter.outbox.dft_mllp import DftUrlError, MllpEndpoint
from adapter.outbox.dft_receivers import DftReceiversError, DftReceiverSpec, load_dft_receivers
from adapter.setting_names import ENV_PREFIX, SettingName
from adapter.store import database_url_problem

CONFIG_FILE_VARIABLE = f"{ENV_PREFIX}CONFIG_FILE"  # where the TOML file is: not a setting
# ADAPTER_* variables that are not settings: the settings file, and the knobs of the test and
# fuzz tools (tests/, `make fuzz`), which never reach the service.
NOT_SETTINGS = frozenset(
    {
        CONFIG_FILE_VARIABLE,
        "ADAPTER_TEST_PG_URL",
        "ADAPTER_FUZZ",
        "ADAPTER_FUZZ_EXAMPLES",
        "ADAPTER_FUZZ_LIVE_EXAMPLES",
        "ADAPTER_ATHERIS_KNOWN",
    }
)
MAX_WORKERS = 64  # ADAPTER_WORKERS: more than the cores only adds contention
SECRET_FIELDS = frozenset({"fhir_auth_header", "database_url", "auth_tokens"})


def _default_mappings() -> str:
    return str(Path(__file__).resolve().parent.parent / "mappings")  # ADAPTER_MAPPINGS_DIR wins


def _default_replica() -> str:
    return f"{socket.gethostname()}-{os.getpid()}"


@dataclass(frozen=True, slots=True)
class Settings:
    host: str = "127.0.0.1"  # where both listeners bind; 0.0.0.0 in containers
    mllp_port: int = 2575
    http_port: int = 8080
    database_url: str = "sqlite:///./var/adapter.db"
    database_schema: str = "public"  # PostgreSQL schema holding the adapter's tables
    mappings_dir: str = field(default_factory=_default_mappings)
    site_tz: str = "America/New_York"  # D25
    default_setting: str = Setting.HOSPITAL_OUTPATIENT  # D1
    pump_g0498: bool = False  # R27
    z_order: str = ZOrder.CHEMO_FIRST.value  # R39
    quiet_period_minutes: int = 240  # close an encounter 4 h after its last message
    end_of_day_cutoff: str = ""  # "HH:MM" site time: close the day's encounters then; "" = off
    close_check_seconds: float = 5.0  # how often the coder looks for encounters to close
    lease_seconds: int = 120  # an encounter handed to one replica is its own for this long
    mllp_idle_timeout_seconds: float = 300.0  # without a complete frame
    mllp_max_frame_bytes: int = 1024 * 1024
    http_max_body_bytes: int = 10 * 1024 * 1024
    # Limits against hostile or broken peers (docs/security.md); 0 turns a cap off.
    mllp_frame_deadline_seconds: float = 30.0  # a frame completes this long after its start
    mllp_buffer_budget_bytes: int = 128 * 1024 * 1024  # unfinished frames, all connections
    mllp_max_connections: int = 1000
    mllp_max_connections_per_address: int = 100
    http_max_connections: int = 1000
    http_max_connections_per_address: int = 100
    http_header_timeout_seconds: float = 20.0  # request head complete; also keep-alive idle
    http_body_timeout_seconds: float = 60.0  # request body complete, from its first read
    http_body_budget_bytes: int = 128 * 1024 * 1024  # bodies being read, all requests
    fd_reserve: int = 64  # MLLP refuses below this many free descriptors, HTTP below 1/4
    fhir_base_url: str = ""  # downstream FHIR server; "" = serve resources only from /fhir
    fhir_auth_header: str = ""  # e.g. "Authorization: Bearer <token>"
    delivery_backoff_base_seconds: float = 2.0
    delivery_backoff_max_seconds: float = 600.0
    delivery_timeout_seconds: float = 30.0
    # DFT^P03 to a billing system over MLLP (docs/charges-out.md); "" = none sent
    dft_url: str = ""  # mllp://host:port, or mllps://host:port for TLS
    dft_profile: str = "generic-2.5.1"  # a receiver profile in mappings/dft_profiles/
    dft_ack_timeout_seconds: float = 30.0  # no ACK by then: retried with the backoff
    dft_ca_file: str = ""  # mllps: PEM CAs to verify the receiver ("" = the system's)
    dft_cert_file: str = ""  # mllps: client certificate (mutual TLS), with dft_key_file
    dft_key_file: str = ""
    # several receivers instead: a TOML file of [receiver.<name>] tables, dft:<name> each
    dft_receivers_file: str = ""
    shutdown_grace_seconds: float = 20.0
    log_format: str = "auto"  # auto (JSON unless a terminal) | json | console
    log_level: str = "info"
    replica_id: str = field(default_factory=_default_replica)
    workers: int = 1  # serve processes sharing the ports and the store (docs/performance.md)
    event_loop: str = "asyncio"  # asyncio | uvloop (the `uvloop` extra; docs/performance.md)
    # Security (docs/security.md): TLS on both listeners, bearer tokens on the HTTP API.
    tls_cert_file: str = ""  # PEM certificate (chain); with tls_key_file, TLS on MLLP and HTTP
    tls_key_file: str = ""  # PEM private key, unencrypted
    tls_client_ca_file: str = ""  # PEM CA bundle: require client certificates (mutual TLS)
    tls_min_version: str = "TLSv1.2"  # TLSv1.2 | TLSv1.3
    # `charge-adapter health` under mutual TLS: the client certificate it presents ("" = the
    # server's own, which then needs clientAuth in its extended key usage)
    health_client_cert_file: str = ""
    health_client_key_file: str = ""
    auth_tokens: str = ""  # "name:token,name:token" (secret)
    auth_tokens_file: str = ""  # one name:token per line, # comments (a mounted Secret)
    auth_required: bool | None = None  # None: required when any token is configured
    auth_read_only_names: str = ""  # comma-separated token names that may only read
    ui_session_idle_minutes: int = 30  # a workbench login ends after this long unused

    @property
    def tz(self) -> ZoneInfo:
        return ZoneInfo(self.site_tz)

    @property
    def cutoff(self) -> time | None:
        return time.fromisoformat(self.end_of_day_cutoff) if self.end_of_day_cutoff else None

    def coding_options(self) -> CodingOptions:
        return CodingOptions(
            default_setting=self.default_setting,
            pump_code_g0498=self.pump_g0498,
            z_order=ZOrder(self.z_order),
        )

    def auth_header(self) -> tuple[str, str] | None:
        if not self.fhir_auth_header:
            return None
        name, _, value = self.fhir_auth_header.partition(":")
        return name.strip(), value.strip()

    def masked(self) -> dict[str, Any]:
        """Effective values for display; secrets reduced to whether they are set."""
        out: dict[str, Any] = {}
        for f in fields(self):
            value = getattr(self, f.name)
            if f.name in SECRET_FIELDS and value and "://" in str(value):
                scheme, _, rest = str(value).partition("://")
                value = f"{scheme}://***@{rest.rpartition('@')[2]}" if "@" in rest else value
            elif f.name in SECRET_FIELDS and value:
                value = "***"
            out[f.name] = value
        return out


@dataclass(frozen=True, slots=True)
class CheckedSettings:
    """Valid settings and what their check loaded: the credentials (the TLS context, the
    tokens) and the DFT receivers (the receivers file, read once, or `ADAPTER_DFT_URL`'s)."""

    settings: Settings
    credentials: Credentials
    dft_receivers: tuple[DftReceiverSpec, ...] = ()


def load_settings(
    environ: Mapping[str, str] | None = None,
    config_file: str | None = None,
    *,
    strict: bool = False,
) -> Settings:
    """Defaults, then the TOML file (`ADAPTER_CONFIG_FILE` or the argument), then `ADAPTER_*`.

    `strict`: an `ADAPTER_*` variable that is no setting is an error, as an unknown TOML key
    always is (without it, the caller warns with `unknown_variables`).
    """
    return load_checked(environ, config_file, strict=strict).settings


def load_checked(
    environ: Mapping[str, str] | None = None,
    config_file: str | None = None,
    *,
    strict: bool = False,
) -> CheckedSettings:
    """`load_settings`, keeping the credentials the check loaded: what `serve` starts with."""
    env = dict(os.environ if environ is None else environ)
    unknown = unknown_variables(env)
    if strict and unknown:
        raise SettingsError("; ".join(unknown))
    values: dict[str, Any] = {}
    path = config_file or env.get(CONFIG_FILE_VARIABLE, "")
    if path:
        values.update(_read_toml(Path(path)))
    for f in fields(Settings):
        variable = SettingName[f.name.upper()]
        raw = env.get(variable)
        if raw is not None:
            values[f.name] = _convert(f.name, raw, variable)
    settings = replace(Settings(), **values)
    return _validate(settings)


def unknown_variables(environ: Mapping[str, str]) -> list[str]:
    """One sentence per `ADAPTER_*` variable that is not a setting (a typo is silently a
    default otherwise), naming the closest setting when there is one."""
    known: list[str] = list(SettingName)
    problems = []
    for name in sorted(environ):
        if not name.startswith(ENV_PREFIX) or name in known or name in NOT_SETTINGS:
            continue
        close = difflib.get_close_matches(name, known, n=1)
        hint = f" (did you mean {close[0]}?)" if close else ""
        problems.append(f"{name} is not a setting{hint}")
    return problems


def _read_toml(path: Path) -> dict[str, Any]:
    try:
        data = tomllib.loads(path.read_text(encoding="utf-8"))
    except OSError as exc:
        raise SettingsError(f"config file {path}: cannot read ({exc.strerror})") from None
    except tomllib.TOMLDecodeError as exc:
        raise SettingsError(f"config file {path}: {exc}") from None
    section = data.get("adapter", data)
    known = {f.name for f in fields(Settings)}
    unknown = sorted(set(section) - known)
    if unknown:
        raise SettingsError(f"config file {path}: unknown setting(s) {', '.join(unknown)}")
    return {k: _convert(k, v, f"{path} [{k}]") for k, v in section.items()}


_BOOL = {"1": True, "true": True, "yes": True, "on": True, "0": False, "false": False,
         "no": False, "off": False}  # fmt: skip


def _convert(name: str, raw: object, where: str) -> Any:
    kind = {f.name: f.type for f in fields(Settings)}[name]
    try:
        return _CONVERTERS[str(kind)](raw)
    except (ValueError, KeyError):
        setting = SettingName[name.upper()]
        raise SettingsError(f"{where}: '{raw}' is not a valid {kind}", setting) from None


def _to_bool(raw: object) -> bool:
    if isinstance(raw, bool):
        return raw
    return _BOOL[str(raw).strip().lower()]


def _to_optional_bool(raw: object) -> bool | None:
    """A yes/no setting whose default depends on others: "" or "auto" leaves it to them."""
    if isinstance(raw, str) and raw.strip().lower() in ("", "auto"):
        return None
    return _to_bool(raw)


_CONVERTERS: dict[str, Callable[[object], Any]] = {
    "str": str,
    "int": lambda v: int(str(v)),
    "float": lambda v: float(str(v)),
    "bool": _to_bool,
    "bool | None": _to_optional_bool,
}


def _validate(s: Settings) -> CheckedSettings:
    """Every problem at once (SettingsError); else the settings with what the check loaded."""
    problems = []
    for name in ("mllp_port", "http_port"):
        port = getattr(s, name)
        if not 0 <= port <= 65535:
            problems.append(f"{name}={port}: a TCP port is 0-65535")
    try:
        ZoneInfo(s.site_tz)
    except (ZoneInfoNotFoundError, ValueError):
        problems.append(f"site_tz={s.site_tz}: not an IANA time zone (e.g. America/New_York)")
    if s.default_setting not in SETTINGS:
        problems.append(f"default_setting={s.default_setting}: one of {', '.join(SETTINGS)}")
    if s.z_order not in {z.value for z in ZOrder}:
        problems.append(f"z_order={s.z_order}: one of {', '.join(z.value for z in ZOrder)}")
    if s.end_of_day_cutoff:
        try:
            time.fromisoformat(s.end_of_day_cutoff)
        except ValueError:
            problems.append(f"end_of_day_cutoff={s.end_of_day_cutoff}: HH:MM, or empty for off")
    for name in ("quiet_period_minutes", "lease_seconds", "mllp_max_frame_bytes",
                 "http_max_body_bytes", "ui_session_idle_minutes"):  # fmt: skip
        if getattr(s, name) <= 0:
            problems.append(f"{name}: must be positive")
    problems += _limit_problems(s)
    if not 1 <= s.workers <= MAX_WORKERS:
        problems.append(f"workers={s.workers}: 1 (one process, the default) to {MAX_WORKERS}")
    problems += _event_loop_problems(s.event_loop)
    if s.log_format not in ("auto", "json", "console"):
        problems.append(f"log_format={s.log_format}: auto, json or console")
    if s.fhir_base_url and not s.fhir_base_url.startswith(("http://", "https://")):
        problems.append("fhir_base_url: must start with http:// or https://")
    if s.fhir_auth_header and ":" not in s.fhir_auth_header:
        problems.append("fhir_auth_header: 'Header-Name: value'")
    receivers, dft_problems = _dft_receivers(s)
    problems += dft_problems
    if bool(s.health_client_cert_file) != bool(s.health_client_key_file):
        problems.append("health_client_cert_file and health_client_key_file: set both or neither")
    for name in ("health_client_cert_file", "health_client_key_file"):
        if getattr(s, name) and not Path(getattr(s, name)).is_file():
            problems.append(f"{name}={getattr(s, name)}: no such file")
    url_problem = database_url_problem(s.database_url)
    if url_problem:
        problems.append(f"database_url: {url_problem}")
    if not Path(s.mappings_dir).is_dir():
        problems.append(f"mappings_dir={s.mappings_dir}: not a directory")
    credentials, credential_problems = loaded_or_problems(s)  # TLS files and tokens
    problems += credential_problems
    if problems or credentials is None:
        raise SettingsError("invalid settings: " + "; ".join(problems))
    return CheckedSettings(s, credentials, receivers)


_POSITIVE_LIMITS = (
    "mllp_frame_deadline_seconds",
    "mllp_buffer_budget_bytes",
    "mllp_idle_timeout_seconds",
    "http_header_timeout_seconds",
    "http_body_timeout_seconds",
    "http_body_budget_bytes",
)
_CAPS = (
    "mllp_max_connections",
    "mllp_max_connections_per_address",
    "http_max_connections",
    "http_max_connections_per_address",
    "fd_reserve",
)


def dft_receivers_of(s: Settings) -> tuple[DftReceiverSpec, ...]:
    """The DFT receivers of settings built directly (tests, tools), checked as `load_checked`
    checks them: SettingsError naming the problem. `serve` keeps the check's instead."""
    receivers, problems = _dft_receivers(s)
    if problems:
        raise SettingsError("invalid settings: " + "; ".join(problems))
    return receivers


def _dft_receivers(s: Settings) -> tuple[tuple[DftReceiverSpec, ...], list[str]]:
    """ADAPTER_DFT_*: a well-formed URL, its TLS files in pairs and present; or a receivers
    file that loads (adapter/outbox/dft_receivers.py), not both. The receivers (none when
    no DFT is configured), or the problems."""
    if s.dft_receivers_file:
        if s.dft_url:
            return (), ["dft_url and dft_receivers_file: set one, not both"]
        try:
            return load_dft_receivers(Path(s.dft_receivers_file)), []
        except DftReceiversError as exc:
            return (), [f"dft_receivers_file: {exc}"]
    if not s.dft_url:
        return (), []
    problems = []
    try:
        endpoint = MllpEndpoint.parse(s.dft_url)
    except DftUrlError as exc:
        problems.append(f"dft_url: {exc}")
    if s.dft_ack_timeout_seconds <= 0:
        problems.append("dft_ack_timeout_seconds: must be positive")
    if bool(s.dft_cert_file) != bool(s.dft_key_file):
        problems.append("dft_cert_file and dft_key_file: set both or neither")
    for name in ("dft_ca_file", "dft_cert_file", "dft_key_file"):
        if getattr(s, name) and not Path(getattr(s, name)).is_file():
            problems.append(f"{name}={getattr(s, name)}: no such file")
    if problems:
        return (), problems
    one = DftReceiverSpec(
        name=s.dft_profile,
        endpoint=endpoint,
        profile=s.dft_profile,
        ack_timeout_seconds=s.dft_ack_timeout_seconds,
        ca_file=s.dft_ca_file,
        cert_file=s.dft_cert_file,
        key_file=s.dft_key_file,
    )
    return (one,), []


def _limit_problems(s: Settings) -> list[str]:
    """Deadlines and budgets must be positive; caps may be 0 (off), never negative."""
    problems = [f"{name}: must be positive" for name in _POSITIVE_LIMITS if getattr(s, name) <= 0]
    problems += [f"{name}: 0 (off) or more" for name in _CAPS if getattr(s, name) < 0]
    if s.http_body_budget_bytes < s.http_max_body_bytes:
        problems.append("http_body_budget_bytes: at least http_max_body_bytes")
    return problems


EVENT_LOOPS = ("asyncio", "uvloop")


def _event_loop_problems(event_loop: str) -> list[str]:
    """uvloop is optional (`pip install 'charge-adapter[uvloop]'`): asked for and missing,
    the service does not start, rather than run quietly on the loop it was told not to use."""
    if event_loop not in EVENT_LOOPS:
        return [f"event_loop={event_loop}: {' or '.join(EVENT_LOOPS)}"]
    if event_loop == "uvloop" and importlib.util.find_spec("uvloop") is None:
        return ["event_loop=uvloop: uvloop is not installed (pip install 'charge-adapter[uvloop]')"]
    return []
