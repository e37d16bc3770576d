"""Several DFT receivers through `ADAPTER_DFT_RECEIVERS_FILE`: each its own destination
`dft:<name>`, its own profile and TLS; the file checked at start-up with one sentence
naming the file and the key; both receivers get their DFTs from one running service."""

from __future__ import annotations

from pathlib import Path

import pytest

from adapter.config import load_checked, load_settings
from adapter.errors import SettingsError
from adapter.outbox.dft_receivers import DftReceiversError, load_dft_receivers
from adapter.runtime import load_runtime
from adapter.web.app import start_state, stop_state
from tests.dft_support import field, ft1s, parse, repetitions
from tests.service_fixtures import Clock, make_settings
from tests.test_dft import strict
from tests.test_dft_delivery import drain
from tests.test_dft_sink import Receiver, receiving
from tests.test_service_e2e import hl7_messages, send_messages

TWO = """
[receiver.hospital]
url = "mllp://127.0.0.1:{hospital}"
profile = "generic-2.5.1"
ack_timeout_seconds = 2

[receiver.practice]
url = "mllp://127.0.0.1:{practice}"
profile = "cpt-in-ft1-7-2.3"
"""


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "receivers.toml"
    path.write_text(text)
    return path


def test_a_receivers_file_names_each_receiver_its_url_profile_and_timeout(
    tmp_path: Path,
) -> None:
    specs = load_dft_receivers(write(tmp_path, TWO.format(hospital=7001, practice=7002)))
    assert [(s.name, s.endpoint.port, s.profile, s.ack_timeout_seconds) for s in specs] == [
        ("hospital", 7001, "generic-2.5.1", 2.0),
        ("practice", 7002, "cpt-in-ft1-7-2.3", 30.0),
    ]


@pytest.mark.parametrize(
    ("text", "message"),
    [
        ("", "no receiver: add a [receiver.<name>] table"),
        ("[receivers.a]\nurl = 'mllp://h:1'\n", "unknown key receivers"),
        ("[receiver.a]\nprofile = 'generic-2.5.1'\n", "receiver.a.url: required"),
        ("[receiver.a]\nurl = 'http://h:1'\n", "receiver.a.url: must start with mllp://"),
        ("[receiver.a]\nurl = 'mllp://h'\n", "receiver.a.url: must name a host and a port"),
        ("[receiver.a]\nurl = 'mllp://h:1'\nprofle = 'x'\n", "receiver.a.profle: unknown key"),
        ("[receiver.A]\nurl = 'mllp://h:1'\n", "receiver.A: a name is 1-40 of a-z 0-9 _ -"),
        ("[receiver.a]\nurl = 'mllp://h:1'\nack_timeout_seconds = 0\n", "a positive number"),
        ("[receiver.a]\nurl = 'mllps://h:1'\ncert_file = 'c.pem'\n", "cert_file: "),
        ("[receiver.a]\nurl = 'mllp://h:1'\nca_file = 'receivers.toml'\n", "need an mllps://"),
        ("[receiver.a\n", "receivers.toml: "),
    ],
)
def test_a_wrong_receivers_file_is_one_sentence_naming_the_file_and_key(
    tmp_path: Path, text: str, message: str
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(DftReceiversError) as caught:
        load_dft_receivers(path)
    assert message in str(caught.value)
    assert str(caught.value).startswith(str(path))
    assert "\n" not in str(caught.value)


def test_the_settings_refuse_a_bad_receivers_file_and_a_file_beside_the_url(
    tmp_path: Path,
) -> None:
    bad = write(tmp_path, "[receiver.a]\nurl = 'ftp://h:1'\n")
    env = {"ADAPTER_DFT_RECEIVERS_FILE": str(bad), "ADAPTER_MAPPINGS_DIR": "mappings"}
    with pytest.raises(SettingsError, match=r"dft_receivers_file: .*receiver\.a\.url"):
        load_settings(env)
    good = write(tmp_path, TWO.format(hospital=1, practice=2))
    env = {"ADAPTER_DFT_RECEIVERS_FILE": str(good), "ADAPTER_DFT_URL": "mllp://h:1"}
    with pytest.raises(SettingsError, match="dft_url and dft_receivers_file: set one"):
        load_settings(env)
    assert load_settings({"ADAPTER_DFT_RECEIVERS_FILE": str(good)}).dft_receivers_file


async def test_each_receiver_of_the_file_gets_its_own_profiles_dft_from_one_service(
    tmp_path: Path,
) -> None:
    hospital = Receiver(lambda _m, _n: "AA")
    practice = Receiver(lambda _m, _n: "AA")
    async for hospital_port in receiving(hospital):
        async for practice_port in receiving(practice):
            path = write(tmp_path, TWO.format(hospital=hospital_port, practice=practice_port))
            clock = Clock()
            settings = make_settings(
                tmp_path,
                close_check_seconds=3600,
                dft_receivers_file=str(path),
                delivery_backoff_base_seconds=1,
                delivery_backoff_max_seconds=4,
            )
            state = await start_state(settings, clock)
            try:
                assert state.mllp is not None
                await send_messages("127.0.0.1", state.mllp.port, hl7_messages("S16.hl7"))
                clock.advance(days=1)
                await state.coder.run_once()
                await drain(state, clock)
                body = state.metrics.render().decode()
            finally:
                await stop_state(state)
    assert len(hospital.received) == 1 and len(practice.received) == 1
    strict(hospital.received[0], "2.5.1")
    strict(practice.received[0], "2.3")
    hospital_lines = [
        ("-".join([field(s, 25), *repetitions(s, 26)]), field(s, 10))
        for s in ft1s(parse(hospital.received[0]))
    ]
    practice_lines = [(field(s, 7), field(s, 10)) for s in ft1s(parse(practice.received[0]))]
    assert hospital_lines == practice_lines  # the same lines, each in its profile's fields
    for name in ("hospital", "practice"):
        assert (
            f'adapter_delivery_attempts_total{{destination="dft:{name}",result="delivered"}} 1.0'
            in body
        )
        assert f'adapter_destination_up{{destination="dft:{name}"}} 1.0' in body


async def test_the_receivers_file_is_read_once_by_the_settings_check(tmp_path: Path) -> None:
    """`serve` starts from the check's receivers (`CheckedSettings` → `Runtime`): the file
    changed or gone after the check does not change what the service delivers to."""
    path = write(tmp_path, TWO.format(hospital=7001, practice=7002))
    env = {
        "ADAPTER_DFT_RECEIVERS_FILE": str(path),
        "ADAPTER_DATABASE_URL": f"sqlite:///{tmp_path}/adapter.db",
        "ADAPTER_MLLP_PORT": "0",
        "ADAPTER_HTTP_PORT": "0",
    }
    checked = load_checked(env)
    assert [r.name for r in checked.dft_receivers] == ["hospital", "practice"]
    path.write_text("not toml [")  # read again, this would stop the start
    runtime = load_runtime(checked)
    assert runtime.dft_receivers == checked.dft_receivers
    state = await start_state(runtime, Clock())
    try:
        destinations = [queue.destination for queue in state.coder.dft]
    finally:
        await stop_state(state)
    assert destinations == ["dft:hospital", "dft:practice"]
