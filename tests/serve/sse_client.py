"""Reading a stream's server-sent events in tests, as a client would."""

from __future__ import annotations

import json


def read_events(client, stream_id: str, last_event_id: int = 0, timeout: float | None = None) -> list[tuple[int, dict]]:
    """Every (id, event) of ``GET /v1/streams/{id}/events`` until the server ends it;
    ``last_event_id`` > 0 resumes after that id, as a reconnecting EventSource does."""
    headers = {"Last-Event-ID": str(last_event_id)} if last_event_id else {}
    options = {"timeout": timeout} if timeout is not None else {}
    events, event_id = [], None
    with client.stream("GET", f"/v1/streams/{stream_id}/events", headers=headers, **options) as response:
        assert response.status_code == 200
        assert response.headers["content-type"].startswith("text/event-stream")
        for line in response.iter_lines():
            if line.startswith("id: "):
                event_id = int(line[4:])
            elif line.startswith("data: "):
                events.append((event_id, json.loads(line[6:])))
    return events
