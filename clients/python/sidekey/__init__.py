"""Sidekey: read secrets from the Sidekey agent in the same pod (or in local mode).

    import sidekey
    key = sidekey.get("openai")              # the value, as text
    for e in sidekey.watch(): ...            # rotations, no values
    s = sidekey.wait_for_change("openai", version, timeout=30)
    sidekey.load_env("app.env")              # an env-format secret into os.environ

Errors are ``sidekey.SidekeyError`` with ``.code`` (``SIDEKEY_E_*``).
"""
from typing import Dict, Iterator, List, Optional, Union

from .client import Client, Event, Secret, parse_env
from .errors import NotModified, SidekeyError
from .rotating import Rotating, rotating

__all__ = [
    "Client", "Event", "Secret", "SidekeyError", "NotModified", "Rotating",
    "get", "get_secret", "list", "watch", "wait_for_change", "load_env", "parse_env", "rotating",
]
__version__ = "0.1.0"

_list = list


def get(name: str) -> str:
    """The current value of a bound secret as text (``get_secret`` for bytes and version)."""
    return Client().get(name).text()


def get_secret(name: str) -> Secret:
    return Client().get(name)


def list() -> List[Dict[str, object]]:  # noqa: A001 - the issue names it sidekey.list()
    return Client().list()


def watch() -> Iterator[Event]:
    return Client().watch()


def wait_for_change(name: str, version: Optional[str] = None, timeout: Union[int, float] = 30) -> Secret:
    return Client().wait_for_change(name, version, timeout)


def load_env(name: str, override: bool = False) -> Dict[str, str]:
    return Client().load_env(name, override)
