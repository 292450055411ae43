"""Starts a real Sidekey agent (node dist/bin/sidekey.js agent) for the session.

The agent reads `file` store secrets from a temp dir the tests rewrite to
rotate them. Needs `npm run build` first (the tap wrapper runs after it).
At the end, no value the tests used may appear in the agent's log.
"""
import json
import os
import shutil
import socket
import subprocess
import tempfile
import threading
import time
from pathlib import Path

import pytest

REPO = Path(os.environ.get("SIDEKEY_REPO", Path(__file__).resolve().parents[3]))
VALUES = ["sk-py-value-one-4d2a", "sk-py-value-two-8b1c", "sk-py-value-three-2f9e", "anthropic-py-value-6c3d"]


def free_port() -> int:
    # The agent's log is buffered (4 KiB), so its "listening" line cannot tell the port in time.
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


class Agent:
    def __init__(self) -> None:
        self.root = Path(tempfile.mkdtemp(prefix="sidekey-py-"))
        self.src = self.root / "src"
        self.src.mkdir()
        self.token_file = self.root / ".sidekey" / "token"
        self.logs: list = []
        self.write("openai.json", json.dumps({"api_key": VALUES[0], "org": "org-1"}))
        self.write("anthropic.txt", VALUES[3])
        config = {
            "secrets": [
                {"name": "openai", "ref": "file:openai.json#api_key"},
                {"name": "openai.env", "ref": "file:openai.json", "format": "env"},
                {"name": "app.env", "template": 'OPENAI_API_KEY={{secret "file:openai.json#api_key"}}\nANTHROPIC_API_KEY={{secret "file:anthropic.txt"}}\n'},
            ],
            "dir": str(self.root / "secrets"),
            "apiTokenFile": str(self.token_file),
            "listen": {"http": free_port(), "grpc": 0},
            "refresh": "500ms",
            "stores": {"file": {"type": "file", "baseDir": str(self.src)}},
        }
        (self.root / "agent.json").write_text(json.dumps(config))
        bin_js = REPO / "dist" / "bin" / "sidekey.js"
        if not bin_js.exists():
            raise RuntimeError(f"{bin_js} is missing: run `npm run build` first")
        self.proc = subprocess.Popen(["node", str(bin_js), "agent", "--config", str(self.root / "agent.json")],
                                     stdout=subprocess.PIPE, stderr=subprocess.STDOUT, cwd=str(self.root))
        self.addr = "http://127.0.0.1:%d" % config["listen"]["http"]

        def pump() -> None:
            assert self.proc.stdout is not None
            for raw in self.proc.stdout:
                self.logs.append(raw.decode("utf-8", "replace").rstrip("\n"))

        self.pump = threading.Thread(target=pump, daemon=True)
        self.pump.start()
        self.wait_ready()
        self.token = self.token_file.read_text().strip()

    def write(self, name: str, content: str) -> None:
        tmp = self.src / (name + ".tmp")
        tmp.write_text(content)
        os.replace(tmp, self.src / name)

    def wait_ready(self) -> None:
        import urllib.request
        deadline = time.time() + 30
        while time.time() < deadline:
            try:
                with urllib.request.urlopen(self.addr + "/ready", timeout=2) as r:
                    if r.status == 200:
                        return
            except OSError:
                if self.proc.poll() is not None:
                    self.pump.join(5)
                    raise RuntimeError("the agent exited with %s:\n%s" % (self.proc.returncode, "\n".join(self.logs[-20:])))
            time.sleep(0.1)
        raise RuntimeError("the agent did not become ready:\n" + "\n".join(self.logs[-20:]))

    def stop(self) -> None:
        self.proc.terminate()
        try:
            self.proc.wait(10)
        except subprocess.TimeoutExpired:
            self.proc.kill()
        self.pump.join(5)
        shutil.rmtree(self.root, ignore_errors=True)


@pytest.fixture(scope="session")
def agent():
    a = Agent()
    yield a
    a.stop()
    text = "\n".join(a.logs)
    leaked = [i for i, v in enumerate(VALUES) if v in text]
    assert leaked == [], f"secret values {leaked} appeared in the agent log"


@pytest.fixture
def env(agent, monkeypatch):
    """The environment the injector gives an app container."""
    monkeypatch.setenv("SIDEKEY_ADDR", agent.addr)
    monkeypatch.setenv("SIDEKEY_TOKEN_FILE", str(agent.token_file))
    return agent
