"""Turn the worker's decoded Event Grid trigger back into the event as it was sent.

azure-functions decodes a delivery into ``EventGridEvent`` (Event Grid schema) or
``CloudEvent`` (CloudEvents 1.0); the core parser takes the JSON object in either schema.
"""

from __future__ import annotations

from datetime import datetime
from typing import Any

import azure.functions as func


def _iso(value: datetime | None) -> str | None:
    return value.isoformat() if value else None


def event_payload(event: Any) -> dict[str, Any]:
    if isinstance(event, func.CloudEvent):
        return {**event.extension_attrs, "specversion": event.specversion, "id": event.id,
                "source": event.source, "type": event.type, "time": _iso(event.time),
                "subject": event.subject, "datacontenttype": event.datacontenttype,
                "data": event.get_json()}
    return {"id": event.id, "topic": event.topic, "subject": event.subject,
            "eventType": event.event_type, "eventTime": _iso(event.event_time),
            "data": event.get_json(), "dataVersion": event.data_version}
