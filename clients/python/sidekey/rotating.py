"""Keep an object built from a secret (an API client) in step with rotations.

    openai = sidekey.rotating("openai", lambda key: OpenAI(api_key=key))
    openai.get().chat.completions.create(...)

A daemon thread long-polls the agent; when the secret's version changes it
builds a new object and swaps it in. Callers always get the newest one; an
object already handed out keeps working until it is dropped.
"""
import threading
from typing import Callable, Generic, Optional, TypeVar

from .client import Client
from .errors import NotModified, SidekeyError

T = TypeVar("T")


class Rotating(Generic[T]):
    def __init__(self, name: str, build: Callable[[str], T], client: Optional[Client] = None, poll: float = 60.0) -> None:
        self.name = name
        self._build = build
        self._client = client or Client()
        self._poll = poll
        self._lock = threading.Lock()
        s = self._client.get(name)
        self.version = s.version
        self._obj = build(s.text())
        self.rebuilds = 0
        self.last_error: Optional[SidekeyError] = None
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, name=f"sidekey-rotating-{name}", daemon=True)
        self._thread.start()

    def get(self) -> T:
        with self._lock:
            return self._obj

    def close(self) -> None:
        self._stop.set()

    def _run(self) -> None:
        while not self._stop.is_set():
            try:
                s = self._client.wait_for_change(self.name, self.version, self._poll)
            except NotModified:
                continue
            except SidekeyError as e:
                # The agent restarts or is briefly gone: keep the current object, try again.
                self.last_error = e
                self._stop.wait(1.0)
                continue
            if s.version == self.version:
                continue
            obj = self._build(s.text())
            with self._lock:
                self._obj = obj
                self.version = s.version
                self.rebuilds += 1


def rotating(name: str, build: Callable[[str], T], client: Optional[Client] = None, poll: float = 60.0) -> Rotating[T]:
    """An object rebuilt by ``build(value)`` each time secret ``name`` rotates."""
    return Rotating(name, build, client, poll)
