import json
import os
import threading
import time

import pytest

import sidekey
from conftest import VALUES


def test_get_and_list_from_the_environment(env):
    assert sidekey.get("openai") == VALUES[0]
    s = sidekey.get_secret("openai")
    assert s.value == VALUES[0].encode() and s.version
    names = {e["name"]: e for e in sidekey.list()}
    assert set(names) == {"openai", "openai.env", "app.env"}
    assert names["openai"]["version"] == s.version
    assert VALUES[0] not in json.dumps(names), "the list carries no values"


def test_local_mode_defaults_to_the_banner_token_file(agent, monkeypatch):
    monkeypatch.setenv("SIDEKEY_ADDR", agent.addr.replace("http://", ""))  # host:port as printed
    monkeypatch.delenv("SIDEKEY_TOKEN_FILE", raising=False)
    monkeypatch.chdir(agent.root)  # where `.sidekey/token` lives, as in `npm start`
    assert sidekey.Client().token_file == ".sidekey/token"
    assert sidekey.get("openai") == VALUES[0]


def test_errors_carry_the_agent_code(env, agent, tmp_path):
    with pytest.raises(sidekey.SidekeyError) as e:
        sidekey.get("nope")
    assert e.value.code == "SIDEKEY_E_SECRET_UNKNOWN" and e.value.status == 404
    wrong = tmp_path / "token"
    wrong.write_text("not-the-token-0123456789")
    with pytest.raises(sidekey.SidekeyError) as e:
        sidekey.Client(token_file=str(wrong)).get("openai")
    assert e.value.code == "SIDEKEY_E_FORBIDDEN" and e.value.status == 403
    with pytest.raises(sidekey.SidekeyError) as e:
        sidekey.Client(token_file=str(tmp_path / "missing")).get("openai")
    assert e.value.code == "SIDEKEY_E_CLIENT" and "SIDEKEY_TOKEN_FILE" in e.value.message
    with pytest.raises(sidekey.SidekeyError) as e:
        sidekey.Client(addr="http://127.0.0.1:1").get("openai")
    assert e.value.code == "SIDEKEY_E_CLIENT" and "cannot reach the agent" in e.value.message
    with pytest.raises(sidekey.SidekeyError) as e:
        sidekey.Client(addr="https://example.com")
    assert e.value.code == "SIDEKEY_E_CLIENT"
    with pytest.raises(sidekey.SidekeyError) as e:
        sidekey.wait_for_change("openai", None, timeout=0)
    assert e.value.code == "SIDEKEY_E_CLIENT"


def test_load_env_from_env_format_and_template(env, monkeypatch):
    monkeypatch.delenv("OPENAI_API_KEY", raising=False)
    monkeypatch.delenv("ANTHROPIC_API_KEY", raising=False)
    monkeypatch.delenv("api_key", raising=False)
    monkeypatch.delenv("org", raising=False)
    got = sidekey.load_env("app.env")
    assert got == {"OPENAI_API_KEY": VALUES[0], "ANTHROPIC_API_KEY": VALUES[3]}
    assert os.environ["OPENAI_API_KEY"] == VALUES[0]
    assert sidekey.load_env("openai.env") == {"api_key": VALUES[0], "org": "org-1"}
    monkeypatch.setenv("OPENAI_API_KEY", "kept")
    sidekey.load_env("app.env")
    assert os.environ["OPENAI_API_KEY"] == "kept", "existing variables win unless override=True"
    with pytest.raises(sidekey.SidekeyError) as e:
        sidekey.parse_env("not a line", "x")
    assert e.value.code == "SIDEKEY_E_FORMAT"
    assert sidekey.parse_env('A="x\\ny\\"z\\$"\n') == {"A": 'x\ny"z$'}


def test_wait_for_change_long_polls_and_times_out(env, agent):
    cur = sidekey.get_secret("openai")
    t0 = time.time()
    with pytest.raises(sidekey.NotModified):
        sidekey.wait_for_change("openai", cur.version, timeout=1)
    assert time.time() - t0 >= 0.9
    threading.Timer(0.5, lambda: agent.write("openai.json", json.dumps({"api_key": VALUES[1], "org": "org-1"}))).start()
    s = sidekey.wait_for_change("openai", cur.version, timeout=20)
    assert s.text() == VALUES[1] and s.version != cur.version
    assert sidekey.wait_for_change("openai", None, timeout=1).text() == VALUES[1], "no version: answers at once"


def test_watch_sees_current_then_changed(env, agent):
    events = sidekey.watch()
    first = [next(events) for _ in range(3)]
    assert {e.kind for e in first} == {"current"}
    assert {e.name for e in first} == {"openai", "openai.env", "app.env"}
    before = {e.name: e.version for e in first}
    agent.write("openai.json", json.dumps({"api_key": VALUES[2], "org": "org-1"}))
    changed = None
    for e in events:
        if e.kind == "changed" and e.name == "openai":
            changed = e
            break
    events.close()
    assert changed is not None and changed.version != before["openai"]


class FakeApiClient:
    """Stands in for e.g. openai.OpenAI(api_key=...): an object built from a key."""

    def __init__(self, api_key: str) -> None:
        self.api_key = api_key


def test_rotating_rebuilds_the_client_when_the_key_rotates(env, agent):
    agent.write("openai.json", json.dumps({"api_key": VALUES[0], "org": "org-1"}))
    deadline = time.time() + 20
    while sidekey.get("openai") != VALUES[0] and time.time() < deadline:
        time.sleep(0.1)
    r = sidekey.rotating("openai", FakeApiClient, poll=5)
    try:
        old = r.get()
        assert old.api_key == VALUES[0]
        agent.write("openai.json", json.dumps({"api_key": VALUES[1], "org": "org-1"}))
        deadline = time.time() + 20
        while r.get().api_key != VALUES[1] and time.time() < deadline:
            time.sleep(0.05)
        assert r.get().api_key == VALUES[1] and r.rebuilds >= 1
        assert old.api_key == VALUES[0], "an object already handed out is not mutated"
    finally:
        r.close()
