"""``edgevlm serve --ray``: the stream hub's protocol without Ray (fast), and a real local Ray
(2 replicas, 4 file streams followed concurrently over HTTP, captions load-balanced; slow:
starting Ray takes ~20 s on 2 cores)."""

from __future__ import annotations

import asyncio
import collections
import subprocess
import sys
import threading
import time

import pytest

from edgevlm.runtime.serve.ray_hub import StreamHub, choose_replica
from edgevlm.runtime.serve.stream_runner import StreamSpec
from tests.serve.live_server import live_server
from tests.serve.sse_client import read_events
from tests.support import SAMPLE_PHOTOS, make_video


# --------------------------------------------------------------------------- fast: no Ray
def test_choose_replica_fewest_live_then_fewest_kept_then_first_registered():
    assert choose_replica([]) is None
    assert choose_replica([("a", 0, 0), ("b", 0, 0)]) == "a"
    assert choose_replica([("a", 1, 1), ("b", 0, 0)]) == "b"
    assert choose_replica([("a", 0, 1), ("b", 0, 0)]) == "b"  # a's stream ended: b still has run none
    assert choose_replica([("a", 0, 2), ("b", 1, 1)]) == "a"  # a live stream weighs more than ended ones


class FakeReplica:
    """A replica's side of the hub protocol, in the test's loop: opens every stream, answers
    frame with b"jpeg"; stop sends the stream's summary and end before it answers."""

    def __init__(self, hub: StreamHub, key: str):
        self.hub, self.key, self.started = hub, key, []
        self.task = asyncio.create_task(self.run())

    async def run(self):
        while True:
            for call_id, op, stream_id, argument in await self.hub.next_commands(self.key, {}, wait=0.05):
                if op == "start":
                    self.started.append(stream_id)
                    await self.hub.push([(stream_id, {"event": "frame"})])
                elif op == "stop":
                    await self.hub.push([(stream_id, {"event": "summary", "ended_by": "removed"}), (stream_id, None)])
                await self.hub.reply(call_id, ("ok", {"frame": b"jpeg"}.get(op)))

    def kill(self):
        self.task.cancel()


async def follow(hub: StreamHub, stream_id: str) -> list[dict]:
    """What the app's SSE loop does: every event until the stream closes or is gone."""
    seen, after = [], 0
    while True:
        outcome = await hub.events_since(stream_id, after)
        if outcome[0] != "ok":
            return seen
        records, closed = outcome[1]
        seen += [record for _, record in records]
        after = records[-1][0] if records else after
        if closed and not records:
            return seen
        if not records:
            await hub.wait_events(stream_id, after, 1.0)


def test_hub_assigns_balanced_numbers_events_and_routes_calls():
    async def scenario():
        hub = StreamHub(max_streams=4)
        replicas = [FakeReplica(hub, "r1"), FakeReplica(hub, "r2")]
        for replica in replicas:
            await hub.register(replica.key)
        added = await asyncio.gather(*(hub.add_stream(StreamSpec(f"cam{i}")) for i in range(4)))
        assert [outcome[0] for outcome in added] == ["ok"] * 4
        assert collections.Counter(o[1]["replica"] for o in added) == {"r1": 2, "r2": 2}
        assert {o[1]["id"] for o in added} == set(replicas[0].started + replicas[1].started)
        stream_id = replicas[0].started[0]

        # events: numbered in the order pushed, state and captions mirrored, a follower woken
        follower = asyncio.create_task(hub.wait_events(stream_id, 1, 5.0))
        await asyncio.sleep(0.01)
        assert not follower.done()
        await hub.push([(stream_id, {"event": "caption", "text": "a dog"}),
                        (stream_id, {"event": "spoken", "text": "a dog"}),
                        (stream_id, {"event": "summary", "captions": 1}), (stream_id, None)])
        assert await asyncio.wait_for(follower, 1.0) == ("ok", None)
        status, (records, closed) = await hub.events_since(stream_id, 0)
        assert [i for i, _ in records] == [1, 2, 3, 4] and closed
        assert [r["event"] for _, r in records] == ["frame", "caption", "spoken", "summary"]
        assert (await hub.events_since(stream_id, 2))[1][0][0][0] == 3  # Last-Event-ID resumes after it
        info = {i["id"]: i for i in await hub.stream_infos()}[stream_id]
        assert (info["state"], info["captions"], info["last_caption"]) == ("ended", 1, "a dog")

        # calls reach the stream's replica; unknown streams are 404; the limit is 503
        assert await hub.call(stream_id, "frame", None, 1.0) == ("ok", b"jpeg")
        assert (await hub.call("nope", "frame", None, 1.0))[:2] == ("problem", 404)
        assert (await hub.add_stream(StreamSpec("cam4")))[0] == "ok"  # one has ended: 3 live + 1
        busy = await hub.add_stream(StreamSpec("cam5"))
        assert busy[:2] == ("problem", 503) and busy[3] == {"Retry-After": "30"}
        assert await hub.remove_stream(stream_id) == ("ok", None)
        assert (await hub.events_since(stream_id, 0))[:2] == ("problem", 404)
        assert (await hub.remove_stream(stream_id))[:2] == ("problem", 404)

        # a live stream's follower gets its summary before DELETE makes it 404
        live_id = replicas[0].started[1]
        follower = asyncio.create_task(follow(hub, live_id))
        await asyncio.sleep(0.01)
        assert await hub.remove_stream(live_id) == ("ok", None)
        seen = await asyncio.wait_for(follower, 2.0)
        assert [r["event"] for r in seen] == ["frame", "summary"] and seen[-1]["ended_by"] == "removed"
        assert (await hub.events_since(live_id, 0))[:2] == ("problem", 404)  # gone for a new client
        assert (await hub.events_since(live_id, 1))[1] == ([(2, seen[-1])], True)  # its follower may come back

        # a replica that stops polling is lost: its live streams fail, calls to it get 503
        hub.lost_s = 0.3
        lost = replicas[1]
        lost.kill()
        lost_streams = list(lost.started)
        waiting = asyncio.create_task(hub.call(lost_streams[0], "frame", None, 5.0))
        await asyncio.sleep(0.5)  # r1 keeps polling; its next poll finds r2 silent
        assert (await asyncio.wait_for(waiting, 2.0))[:2] == ("problem", 503)
        infos = {i["id"]: i for i in await hub.stream_infos()}
        assert {infos[s]["state"] for s in lost_streams} == {"failed"}
        assert "lost" in infos[lost_streams[0]]["error"]
        assert list((await hub.stats())["replicas"]) == ["r1"]
        replicas[0].kill()

    asyncio.run(scenario())


def test_import_needs_no_ray_and_says_which_extra():
    code = ("import sys\nsys.modules['ray'] = None\n"
            "from edgevlm.errors import EdgeVLMError\n"
            "from edgevlm.runtime.serve.ray_service import RayService\n"
            "from edgevlm.runtime.serve.settings import ServeSettings\n"
            "try:\n    RayService(ServeSettings())\nexcept EdgeVLMError as exc:\n    print(exc)\n")
    result = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert result.returncode == 0, result.stderr
    assert "pip install 'edgevlm[ray]'" in result.stdout


# --------------------------------------------------------------------------- slow: a real local Ray
@pytest.mark.slow
def test_two_replicas_serve_four_streams_and_balance_captions(tmp_path):
    pytest.importorskip("ray.serve", reason="needs the ray extra: pip install 'edgevlm[ray]'")
    import httpx
    import ray

    from edgevlm.runtime.serve.app import create_app
    from edgevlm.runtime.serve.ray_service import RayService
    from edgevlm.runtime.serve.settings import ServeSettings

    video = make_video(str(tmp_path / "walk.avi"), seconds=4.0)
    settings = ServeSettings(realtime_files=False, queue_size=1)
    service = RayService(settings, replicas=2)
    photos = [open(path, "rb").read() for path in SAMPLE_PHOTOS]
    with live_server(create_app(settings, service=service)) as base, httpx.Client(base_url=base, timeout=60) as client:
        # 4 streams, each followed from the moment it exists, while captions are asked for
        followed: dict[str, list] = {}
        threads, stream_ids = [], []
        for _ in range(4):
            response = client.post("/v1/streams", json={"source": video})
            assert response.status_code == 201, response.text
            stream_id = response.json()["id"]
            stream_ids.append(stream_id)
            thread = threading.Thread(target=lambda s=stream_id: followed.__setitem__(s, read_events(client, s, timeout=120)))
            thread.start()
            threads.append(thread)
        captions = [client.post("/v1/caption", files={"image": photos[i % 4]}) for i in range(8)]
        for thread in threads:
            thread.join(120)

        infos = {i["id"]: i for i in client.get("/v1/streams").json()["streams"]}
        assert sorted(collections.Counter(infos[s]["replica"] for s in stream_ids).values()) == [2, 2]
        for stream_id in stream_ids:
            events = followed[stream_id]
            ids = [i for i, _ in events]
            assert ids == list(range(1, len(ids) + 1)), f"ids not 1..n without gaps or repeats: {ids}"
            summary = events[-1][1]
            assert summary["event"] == "summary"
            kinds = collections.Counter(e["event"] for _, e in events)
            assert kinds["caption"] == summary["captions"] > 0
            assert kinds["frame"] == summary["frames"] == 40
            assert infos[stream_id]["state"] == "ended" and infos[stream_id]["captions"] == summary["captions"]
        resumed = read_events(client, stream_ids[0], last_event_id=3, timeout=120)  # as EventSource reconnects
        assert resumed == followed[stream_ids[0]][3:]

        # the stream's own replica answers frame.jpg and its questions; deleted is gone
        frame = client.get(f"/v1/streams/{stream_ids[0]}/frame.jpg")
        assert frame.status_code == 200 and frame.content[:2] == b"\xff\xd8"
        assert client.post(f"/v1/streams/{stream_ids[0]}/ask", json={"question": "a dog?"}).status_code == 409
        assert client.delete(f"/v1/streams/{stream_ids[0]}").status_code == 200
        assert client.get(f"/v1/streams/{stream_ids[0]}/events").status_code == 404
        assert client.post("/v1/streams", json={"source": str(tmp_path / "none.avi")}).status_code == 400

        # deleting a running stream: its follower still gets the summary, which says why it ended
        paced = client.post("/v1/streams", json={"source": video, "realtime": True}).json()["id"]
        last: list = []
        follower = threading.Thread(target=lambda: last.extend(read_events(client, paced, timeout=120)))
        follower.start()
        time.sleep(1.0)
        assert client.delete(f"/v1/streams/{paced}").status_code == 200
        follower.join(30)
        assert last[-1][1]["event"] == "summary" and last[-1][1]["ended_by"] == "removed"

        # captions went through Ray: answered, and counted by the replicas
        assert [r.status_code for r in captions] == [200] * 8 and all(r.json()["caption"] for r in captions)
        deadline = time.monotonic() + 5  # replicas report on their next poll (<= 1 s)
        while sum(r["requests"] for r in service.stats()["replicas"].values()) < 8:
            assert time.monotonic() < deadline, service.stats()["replicas"]
            time.sleep(0.2)

        # a burst beyond the queues (--queue-size 1: 2 per replica, 2 in Serve's router, which counts a
        # request as queued until a replica takes it): 503 Busy with Retry-After, no errors
        async def burst():
            async with httpx.AsyncClient(base_url=base, timeout=60) as aclient:
                return await asyncio.gather(*(aclient.post("/v1/caption", files={"image": photos[0]})
                                              for _ in range(24)))
        responses = asyncio.run(burst())
        statuses = collections.Counter(r.status_code for r in responses)
        assert set(statuses) == {200, 503} and statuses[200] >= 2, statuses
        assert all(r.headers["Retry-After"] == "1" for r in responses if r.status_code == 503)
        assert service.stats()["busy_rejections"] == statuses[503]
    deadline = time.monotonic() + 60  # the app's shutdown closes the service and the Ray it started
    while ray.is_initialized():
        assert time.monotonic() < deadline, "the local Ray was not shut down"
        time.sleep(0.2)
