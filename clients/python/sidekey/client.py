"""A client for the Sidekey agent's local HTTP endpoint (standard library only).

It reads ``SIDEKEY_ADDR`` and ``SIDEKEY_TOKEN_FILE`` as the injector sets them in
app containers; in local mode (``npm start`` / ``sidekey agent --local-demo``)
it falls back to what the banner prints: ``http://127.0.0.1:8099`` and
``.sidekey/token``. The token file is read again on every request, so a
rewritten file is picked up.
"""
import json
import os
import urllib.error
import urllib.parse
import urllib.request
from dataclasses import dataclass
from typing import Dict, Iterator, List, Optional, Union

from .errors import NotModified, SidekeyError

DEFAULT_ADDR = "http://127.0.0.1:8099"
POD_TOKEN_FILE = "/var/run/secrets/sidekey/.sidekey-token"
LOCAL_TOKEN_FILE = ".sidekey/token"


@dataclass(frozen=True)
class Secret:
    """A value and the version the agent serves it at (the ETag)."""

    name: str
    value: bytes
    version: str

    def text(self) -> str:
        return self.value.decode("utf-8")


@dataclass(frozen=True)
class Event:
    """A watch event: ``kind`` is ``current`` (at connect) or ``changed``. No value."""

    kind: str
    name: str
    version: str
    updated_at: str


def _default_token_file() -> str:
    env = os.environ.get("SIDEKEY_TOKEN_FILE")
    if env:
        return env
    for f in (POD_TOKEN_FILE, LOCAL_TOKEN_FILE):
        if os.path.exists(f):
            return f
    raise SidekeyError(
        "SIDEKEY_E_CLIENT",
        "SIDEKEY_TOKEN_FILE is not set and neither %s nor %s exists; export SIDEKEY_TOKEN_FILE "
        "(the injector sets it; in local mode the banner prints the path)" % (POD_TOKEN_FILE, LOCAL_TOKEN_FILE),
    )


class Client:
    """One agent. ``addr`` and ``token_file`` default to the environment (see the module doc)."""

    def __init__(self, addr: Optional[str] = None, token_file: Optional[str] = None, timeout: float = 10.0) -> None:
        a = addr or os.environ.get("SIDEKEY_ADDR") or DEFAULT_ADDR
        if "://" not in a:
            a = "http://" + a
        parsed = urllib.parse.urlparse(a)
        if parsed.scheme != "http" or not parsed.hostname:
            raise SidekeyError("SIDEKEY_E_CLIENT", f"SIDEKEY_ADDR must be http://host:port, got {a!r}")
        if timeout <= 0:
            raise SidekeyError("SIDEKEY_E_CLIENT", f"timeout must be a positive number of seconds, got {timeout!r}")
        self.addr = a.rstrip("/")
        self.token_file = token_file or _default_token_file()
        self.timeout = timeout

    def _token(self) -> str:
        try:
            with open(self.token_file, encoding="utf-8") as f:
                return f.read().strip()
        except OSError as e:
            raise SidekeyError("SIDEKEY_E_CLIENT", f"cannot read the token file {self.token_file} ({e.strerror}); check SIDEKEY_TOKEN_FILE") from None

    def _open(self, path: str, headers: Optional[Dict[str, str]] = None, timeout: Optional[float] = None):
        req = urllib.request.Request(self.addr + path, headers={"X-Sidekey-Token": self._token(), **(headers or {})})
        try:
            return urllib.request.urlopen(req, timeout=timeout or self.timeout)
        except urllib.error.HTTPError as e:
            if e.code == 304:
                return e
            raise _agent_error(e) from None
        except (urllib.error.URLError, OSError) as e:
            reason = getattr(e, "reason", e)
            raise SidekeyError("SIDEKEY_E_CLIENT", f"cannot reach the agent at {self.addr} ({reason}); is the sidekey-agent container running?") from None

    def get(self, name: str) -> Secret:
        """The current value of a bound secret."""
        with self._open("/v1/secrets/" + urllib.parse.quote(name, safe="")) as r:
            return Secret(name, r.read(), r.headers.get("X-Sidekey-Version", ""))

    def list(self) -> List[Dict[str, object]]:
        """Names, versions and times of every bound secret (no values)."""
        with self._open("/v1/secrets") as r:
            return list(json.loads(r.read())["secrets"])

    def ready(self) -> bool:
        with self._open("/v1/secrets") as r:
            return bool(json.loads(r.read())["ready"])

    def wait_for_change(self, name: str, version: Optional[str] = None, timeout: Union[int, float] = 30) -> Secret:
        """Long-poll: returns once ``name`` has a version other than ``version`` (or exists).

        Raises ``NotModified`` when ``timeout`` seconds pass without a change.
        """
        if timeout <= 0:
            raise SidekeyError("SIDEKEY_E_CLIENT", f"timeout must be positive seconds, got {timeout!r}")
        headers = {"If-None-Match": '"%s"' % version} if version is not None else {}
        q = "?wait=%dms" % int(timeout * 1000)
        r = self._open("/v1/secrets/" + urllib.parse.quote(name, safe="") + q, headers, timeout=timeout + self.timeout)
        with r:
            if isinstance(r, urllib.error.HTTPError):  # 304: the timeout passed, nothing changed
                raise NotModified(name, version or "")
            return Secret(name, r.read(), r.headers.get("X-Sidekey-Version", ""))

    def watch(self) -> Iterator[Event]:
        """Server-sent events: ``current`` for each secret, then ``changed`` on every rotation.

        The iterator runs until the caller stops (close it, or break out of the loop).
        """
        r = self._open("/v1/watch", {"Accept": "text/event-stream"}, timeout=3600)
        try:
            kind = ""
            for raw in r:
                line = raw.decode("utf-8").rstrip("\r\n")
                if line.startswith("event:"):
                    kind = line[6:].strip()
                elif line.startswith("data:"):
                    d = json.loads(line[5:].strip())
                    yield Event(kind or "message", d["name"], d["version"], d.get("updatedAt", ""))
                elif line == "":
                    kind = ""
        finally:
            r.close()

    def load_env(self, name: str, override: bool = False) -> Dict[str, str]:
        """Reads an ``env``-format (or env template) secret and sets ``os.environ`` from it.

        Existing variables win unless ``override``. Returns the parsed map.
        """
        parsed = parse_env(self.get(name).text(), name)
        for k, v in parsed.items():
            if override or k not in os.environ:
                os.environ[k] = v
        return parsed


def parse_env(text: str, where: str = "env") -> Dict[str, str]:
    """Parses the agent's dotenv output (``KEY="value"`` with ``\\n \\" \\\\ \\$`` escapes) and plain ``KEY=value`` lines."""
    out: Dict[str, str] = {}
    for n, line in enumerate(text.splitlines(), 1):
        s = line.strip()
        if s == "" or s.startswith("#"):
            continue
        if s.startswith("export "):
            s = s[7:].lstrip()
        key, sep, val = s.partition("=")
        key = key.strip()
        if not sep or not key.replace("_", "a").isalnum() or key[0].isdigit():
            raise SidekeyError("SIDEKEY_E_FORMAT", f"{where}: line {n} is not KEY=value (use format env for this secret)")
        val = val.strip()
        if len(val) >= 2 and val[0] == val[-1] == '"':
            body, res, i = val[1:-1], [], 0
            esc = {"n": "\n", "r": "\r", '"': '"', "\\": "\\", "$": "$"}
            while i < len(body):
                c = body[i]
                if c == "\\" and i + 1 < len(body) and body[i + 1] in esc:
                    res.append(esc[body[i + 1]])
                    i += 2
                    continue
                res.append(c)
                i += 1
            val = "".join(res)
        elif len(val) >= 2 and val[0] == val[-1] == "'":
            val = val[1:-1]
        out[key] = val
    return out


def _agent_error(e: "urllib.error.HTTPError") -> SidekeyError:
    try:
        body = json.loads(e.read() or b"{}")
        err = body.get("error") or {}
        return SidekeyError(str(err.get("code") or "SIDEKEY_E_CLIENT"), str(err.get("message") or e.reason), e.code)
    except ValueError:
        return SidekeyError("SIDEKEY_E_CLIENT", f"the agent answered HTTP {e.code} without a JSON error", e.code)
