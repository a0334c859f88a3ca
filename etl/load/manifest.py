"""What actually left, derived from the request bodies themselves (not from config).

Why from the bodies: a manifest computed from the mapping would describe intent; this one describes
the bytes that were sent, so a test can rebuild it independently from requests.ndjson and compare.
"""

from __future__ import annotations

from collections import Counter, defaultdict
from typing import Any


class PrivacyManifest:
    def __init__(self) -> None:
        self.request_fields: Counter[str] = Counter()
        self.params: dict[str, Counter[str]] = defaultdict(Counter)
        self.item_params: dict[str, Counter[str]] = defaultdict(Counter)
        self.events: Counter[str] = Counter()

    def observe(self, body: dict[str, Any]) -> None:
        self.request_fields.update(body.keys())
        for event in body.get("events", []):
            name = event.get("name", "")
            self.events[name] += 1
            params = event.get("params", {})
            self.params[name].update(params.keys())
            for item in params.get("items", []) or []:
                self.item_params[name].update(item.keys())

    def to_dict(self) -> dict[str, Any]:
        return {
            "request_fields": dict(sorted(self.request_fields.items())),
            "events": {
                name: {
                    "count": count,
                    "params": dict(sorted(self.params[name].items())),
                    "item_params": dict(sorted(self.item_params[name].items())),
                }
                for name, count in sorted(self.events.items())
            },
        }
