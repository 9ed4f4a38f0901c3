"""Function keys of the local host, as the Functions host keeps them in Azure.

``LOCAL_MASTER_KEY`` opens everything (admin endpoints included); ``LOCAL_FUNCTION_KEYS``
is ``name:key,name:key``. A caller presents a key as ``?code=`` or ``x-functions-key``.
"""

from __future__ import annotations

import hmac
from collections.abc import Mapping
from dataclasses import dataclass


@dataclass(frozen=True)
class HostKeys:
    master: str
    function_keys: Mapping[str, str]

    @classmethod
    def from_env(cls, env: Mapping[str, str]) -> HostKeys:
        keys = {}
        for item in filter(None, (p.strip() for p in env.get("LOCAL_FUNCTION_KEYS", "").split(","))):
            name, sep, key = item.partition(":")
            if not sep or not name or not key:
                raise ValueError("LOCAL_FUNCTION_KEYS must be name:key pairs separated by commas")
            keys[name.strip()] = key.strip()
        master = env.get("LOCAL_MASTER_KEY", "").strip()
        if not master:
            raise ValueError("LOCAL_MASTER_KEY is required by the local host")
        return cls(master, keys)

    def identify(self, presented: str) -> str | None:
        """The name of the key presented ('master' for the master key), or None."""
        if not presented:
            return None
        if hmac.compare_digest(presented, self.master):
            return "master"
        for name, key in self.function_keys.items():
            if hmac.compare_digest(presented, key):
                return name
        return None

    def allows(self, level: str, presented: str) -> bool:
        if level == "anonymous":
            return True
        name = self.identify(presented)
        return name == "master" if level == "admin" else name is not None
