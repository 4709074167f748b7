"""Cross-language check of Strata's wire contract (API.md).

A Python client generated from proto/strata/v1/streams.proto with
grpcio-tools talks to a running `strata` binary. Run it through
tests/python/run.sh, which generates the stubs, starts the server and puts
the stubs on PYTHONPATH.

Usage: strata_client_test.py HOST:PORT
"""

import queue
import sys
import time
import uuid

import grpc
from checklib import run_checks
from google.protobuf import descriptor_pool, empty_pb2
from grpc_health.v1 import health_pb2, health_pb2_grpc
from grpc_reflection.v1alpha.proto_reflection_descriptor_database import (
    ProtoReflectionDescriptorDatabase,
)

from strata.v1 import persistent_pb2 as ps_pb
from strata.v1 import persistent_pb2_grpc as ps_grpc
from strata.v1 import operations_pb2 as ops_pb
from strata.v1 import operations_pb2_grpc as ops_grpc
from strata.v1 import streams_pb2 as pb
from strata.v1 import streams_pb2_grpc as pb_grpc

EMPTY = empty_pb2.Empty()
TIMEOUT = 20  # seconds, for every call


def new_event(event_type, data=b"{}", text_id=False):
    """An event with a fresh id, in the raw (default) or text form."""
    u = uuid.uuid4()
    id_ = pb.Uuid(text=str(u)) if text_id else pb.Uuid(raw=u.bytes)
    return pb.EventData(
        id=id_, type=event_type, data=data, content_type="application/json"
    )


def unique(name):
    """A stream name no other check uses."""
    return f"py-{name}-{uuid.uuid4().hex[:8]}"


def event_uuid(recorded):
    """The id of a recorded event, which the server sends in text form."""
    assert recorded.id.WhichOneof("value") == "text", f"id not text: {recorded.id}"
    return uuid.UUID(recorded.id.text)


def sent_uuid(data):
    if data.id.WhichOneof("value") == "raw":
        return uuid.UUID(bytes=data.id.raw)
    return uuid.UUID(data.id.text)


class Checks:
    def __init__(self, channel):
        self.channel = channel
        self.stub = pb_grpc.StreamsStub(channel)

    # Helpers ------------------------------------------------------------

    def append(self, stream, expected, events):
        return self.stub.Append(
            pb.AppendRequest(stream=stream, expected=expected, events=events),
            timeout=TIMEOUT,
        )

    def head(self):
        return self.stub.Stats(pb.StatsRequest(), timeout=TIMEOUT).head_position

    def read(self, **request):
        events = []
        for batch in self.stub.Read(pb.ReadRequest(**request), timeout=TIMEOUT):
            assert len(batch.events) > 0, "a ReadResponse batch is empty"
            events.extend(batch.events)
        return events

    # Checks -------------------------------------------------------------

    def check_health(self):
        health = health_pb2_grpc.HealthStub(self.channel)
        for service in ["", "strata.v1.Streams"]:
            r = health.Check(health_pb2.HealthCheckRequest(service=service), timeout=TIMEOUT)
            assert (
                r.status == health_pb2.HealthCheckResponse.SERVING
            ), f"health of {service!r} is {r.status}"

    def check_append_success(self):
        stream = unique("order")
        head = self.head()
        events = [new_event("OrderPlaced"), new_event("OrderPaid", text_id=True)]
        r = self.append(stream, pb.ExpectedVersion(no_stream=EMPTY), events)
        assert r.WhichOneof("result") == "success", f"append failed: {r}"
        assert r.success.next_expected_revision == 1, f"revision: {r.success}"
        assert r.success.position == head + 1, f"position {r.success.position}, head was {head}"
        r = self.append(stream, pb.ExpectedVersion(exact=1), [new_event("OrderShipped")])
        assert r.WhichOneof("result") == "success", f"exact(1) failed: {r}"
        assert r.success.next_expected_revision == 2, f"revision: {r.success}"
        assert self.head() == head + 3, "head after three events"

    def check_conflict(self):
        stream = unique("conflict")
        r = self.append(stream, pb.ExpectedVersion(exact=0), [new_event("T")])
        assert r.WhichOneof("result") == "wrong_expected_version", f"expected conflict: {r}"
        assert not r.wrong_expected_version.HasField(
            "current_revision"
        ), "current_revision must be absent for a missing stream"
        self.append(stream, pb.ExpectedVersion(any=EMPTY), [new_event("T"), new_event("T")])
        head = self.head()
        r = self.append(stream, pb.ExpectedVersion(no_stream=EMPTY), [new_event("T")])
        assert r.WhichOneof("result") == "wrong_expected_version", f"expected conflict: {r}"
        w = r.wrong_expected_version
        assert w.HasField("current_revision"), "current_revision must be set"
        assert w.current_revision == 1, f"current_revision {w.current_revision}"
        assert w.expected.WhichOneof("kind") == "no_stream", f"expected echoed: {w.expected}"
        r = self.append(stream, pb.ExpectedVersion(exact=7), [new_event("T")])
        assert r.wrong_expected_version.current_revision == 1, f"exact(7): {r}"
        assert r.wrong_expected_version.expected.exact == 7, f"exact(7) echoed: {r}"
        assert self.head() == head, "a conflict wrote something"

    def check_idempotent_retry(self):
        stream = unique("retry")
        events = [new_event("Paid"), new_event("Paid", text_id=True)]
        first = self.append(stream, pb.ExpectedVersion(no_stream=EMPTY), events)
        assert first.WhichOneof("result") == "success", f"first append: {first}"
        head = self.head()
        for expected in [
            pb.ExpectedVersion(any=EMPTY),
            pb.ExpectedVersion(no_stream=EMPTY),
            pb.ExpectedVersion(exact=0),
        ]:
            r = self.append(stream, expected, events)
            assert r.WhichOneof("result") == "success", f"retry with {expected}: {r}"
            assert r.success == first.success, f"retry answered {r.success}, first {first.success}"
        assert self.head() == head, "a retry wrote events"
        stored = self.read(stream=stream)
        assert len(stored) == 2, f"{len(stored)} events stored"

    def check_read_stream(self):
        stream = unique("read")
        sent = [new_event(f"E{i}", data=f'{{"i":{i}}}'.encode()) for i in range(5)]
        self.append(stream, pb.ExpectedVersion(no_stream=EMPTY), sent[:2])
        self.append(unique("noise"), pb.ExpectedVersion(any=EMPTY), [new_event("N")])
        self.append(stream, pb.ExpectedVersion(exact=1), sent[2:])

        fwd = self.read(stream=stream, direction=pb.FORWARDS)
        assert [e.revision for e in fwd] == [0, 1, 2, 3, 4], f"forwards: {[e.revision for e in fwd]}"
        assert [event_uuid(e) for e in fwd] == [sent_uuid(e) for e in sent], "ids in order"
        assert all(e.stream == stream for e in fwd), "stream names"
        assert [e.type for e in fwd] == [f"E{i}" for i in range(5)], "types"
        assert fwd[3].data == b'{"i":3}', f"data: {fwd[3].data!r}"
        assert fwd[0].content_type == "application/json", "content type"
        assert fwd[0].recorded_at.seconds > 1_600_000_000, "recorded_at is set"
        assert fwd[2].position == fwd[1].position + 2, "a noise event between"

        bwd = self.read(stream=stream, direction=pb.BACKWARDS)
        assert [e.revision for e in bwd] == [4, 3, 2, 1, 0], f"backwards: {[e.revision for e in bwd]}"
        part = self.read(stream=stream, **{"from": pb.ReadFrom(revision=1)}, max_count=2)
        assert [e.revision for e in part] == [1, 2], f"from 1 max 2: {[e.revision for e in part]}"
        back = self.read(
            stream=stream,
            direction=pb.BACKWARDS,
            **{"from": pb.ReadFrom(revision=3)},
        )
        assert [e.revision for e in back] == [3, 2, 1, 0], f"backwards from 3: {[e.revision for e in back]}"

    def check_read_all(self):
        self.append(unique("all"), pb.ExpectedVersion(any=EMPTY), [new_event("A"), new_event("B")])
        head = self.head()
        fwd = self.read(all=pb.AllTarget(), direction=pb.FORWARDS)
        assert [e.position for e in fwd] == list(range(head)), "$all forwards is dense, in order"
        bwd = self.read(all=pb.AllTarget(), direction=pb.BACKWARDS)
        assert [e.position for e in bwd] == list(reversed(range(head))), "$all backwards"
        assert [event_uuid(e) for e in bwd] == [event_uuid(e) for e in reversed(fwd)], "same events"
        last2 = self.read(all=pb.AllTarget(), direction=pb.BACKWARDS, max_count=2)
        assert [e.position for e in last2] == [head - 1, head - 2], "backwards max 2"
        mid = self.read(all=pb.AllTarget(), **{"from": pb.ReadFrom(position=1)}, max_count=1)
        assert [e.position for e in mid] == [1], "from position 1"
        only = self.read(all=pb.AllTarget(), filter=pb.Filter(stream_prefix=["py-all-"]))
        assert [e.type for e in only] == ["A", "B"], f"filtered: {[e.type for e in only]}"

    def check_subscribe_catch_up_then_live(self):
        head = self.head()
        assert head > 0, "earlier checks wrote events"
        call = self.stub.Subscribe(pb.SubscribeRequest(all=pb.AllTarget()), timeout=TIMEOUT)
        try:
            caught = []
            caught_up = None
            for msg in call:
                kind = msg.WhichOneof("content")
                if kind == "events":
                    caught.extend(msg.events.events)
                elif kind == "caught_up":
                    assert msg.caught_up.HasField("position"), "an $all caught_up has a position"
                    assert not msg.caught_up.HasField("revision"), "and no revision"
                    caught_up = msg.caught_up.position
                    break
            # The last position covered: resuming after it misses nothing.
            assert caught_up == head - 1, f"caught_up at {caught_up}, head {head}"
            assert [e.position for e in caught] == list(range(head)), "catch-up is dense"

            stream = unique("live")
            live = new_event("Live")
            r = self.append(stream, pb.ExpectedVersion(no_stream=EMPTY), [live])
            assert r.success.position == head, f"live append at {r.success.position}"
            got = None
            for msg in call:
                kind = msg.WhichOneof("content")
                assert kind != "caught_up", "caught_up sent twice"
                if kind == "events":
                    got = list(msg.events.events)
                    break
            assert got is not None, "no live event"
            assert [e.position for e in got] == [head], f"live positions {[e.position for e in got]}"
            assert got[0].stream == stream and event_uuid(got[0]) == sent_uuid(live), "live event"
        finally:
            call.cancel()

    def check_errors(self):
        head = self.head()
        try:
            self.append("", pb.ExpectedVersion(any=EMPTY), [new_event("T")])
            raise AssertionError("an empty stream name was accepted")
        except grpc.RpcError as e:
            assert e.code() == grpc.StatusCode.INVALID_ARGUMENT, f"empty name: {e.code()}"
        try:
            self.read(stream=unique("missing"))
            raise AssertionError("reading a missing stream succeeded")
        except grpc.RpcError as e:
            assert e.code() == grpc.StatusCode.NOT_FOUND, f"missing stream: {e.code()}"
        assert self.head() == head, "a rejected request wrote something"

    def check_reflection(self):
        db = ProtoReflectionDescriptorDatabase(self.channel)
        services = list(db.get_services())
        assert "strata.v1.Streams" in services, f"reflection lists {services}"
        pool = descriptor_pool.DescriptorPool(db)
        service = pool.FindServiceByName("strata.v1.Streams")
        methods = sorted(m.name for m in service.methods)
        assert methods == [
            "Append",
            "Delete",
            "GetStreamMetadata",
            "MultiAppend",
            "PipelinedAppend",
            "Read",
            "SetStreamMetadata",
            "Stats",
            "Subscribe",
            "Tombstone",
        ], f"methods {methods}"

    def check_lifecycle(self):
        s = unique("life")
        self.append(s, pb.ExpectedVersion(no_stream=EMPTY), [new_event("A"), new_event("B"), new_event("C")])
        r = self.stub.SetStreamMetadata(
            pb.SetStreamMetadataRequest(
                stream=s, expected=pb.ExpectedVersion(no_stream=EMPTY), metadata=pb.StreamMetadata(max_count=2)
            ),
            timeout=TIMEOUT,
        )
        assert r.WhichOneof("result") == "success", f"set metadata: {r}"
        assert r.success.metadata_revision == 0, f"metadata revision {r.success}"
        got = [e.revision for e in self.read(stream=s)]
        assert got == [1, 2], f"max_count 2 shows {got}"
        md = self.stub.GetStreamMetadata(pb.GetStreamMetadataRequest(stream=s), timeout=TIMEOUT)
        assert md.metadata.max_count == 2 and md.metadata_revision == 0, f"metadata {md}"
        r = self.stub.Delete(pb.DeleteRequest(stream=s, expected=pb.ExpectedVersion(exact=2)), timeout=TIMEOUT)
        assert r.WhichOneof("result") == "success", f"delete: {r}"
        try:
            self.read(stream=s)
            raise AssertionError("a deleted stream was read")
        except grpc.RpcError as e:
            assert e.code() == grpc.StatusCode.NOT_FOUND, f"deleted stream: {e.code()}"
        r = self.append(s, pb.ExpectedVersion(no_stream=EMPTY), [new_event("D")])
        assert r.success.next_expected_revision == 3, f"re-created at {r}"
        t = unique("tomb")
        r = self.stub.Tombstone(pb.TombstoneRequest(stream=t, expected=pb.ExpectedVersion(no_stream=EMPTY)), timeout=TIMEOUT)
        assert r.WhichOneof("result") == "success", f"tombstone: {r}"
        try:
            self.append(t, pb.ExpectedVersion(any=EMPTY), [new_event("X")])
            raise AssertionError("appended to a tombstoned name")
        except grpc.RpcError as e:
            assert e.code() == grpc.StatusCode.FAILED_PRECONDITION, f"tombstoned: {e.code()}"

    def check_scavenge(self):
        ops = ops_grpc.OperationsStub(self.channel)
        s = unique("scav")
        self.append(s, pb.ExpectedVersion(no_stream=EMPTY), [new_event("A"), new_event("B")])
        r = self.stub.Delete(pb.DeleteRequest(stream=s, expected=pb.ExpectedVersion(any=EMPTY)), timeout=TIMEOUT)
        assert r.WhichOneof("result") == "success", f"delete: {r}"
        try:
            started = ops.StartScavenge(ops_pb.StartScavengeRequest(), timeout=TIMEOUT)
            assert started.state == ops_pb.ScavengeStatus.RUNNING, f"started: {started}"
            assert started.HasField("started_at"), f"started: {started}"
        except grpc.RpcError as e:
            # Another scavenge of this server may be running: that one will do.
            assert e.code() == grpc.StatusCode.ALREADY_EXISTS, f"start: {e.code()}"
        deadline = time.monotonic() + TIMEOUT
        while True:
            status = ops.GetScavenge(ops_pb.GetScavengeRequest(), timeout=TIMEOUT)
            if status.state != ops_pb.ScavengeStatus.RUNNING:
                break
            assert time.monotonic() < deadline, f"still running: {status}"
            time.sleep(0.02)
        assert status.state == ops_pb.ScavengeStatus.DONE, f"scavenge: {status}"
        assert status.segments_done == status.segments_total, f"scavenge: {status}"
        stopped = ops.StopScavenge(ops_pb.StopScavengeRequest(), timeout=TIMEOUT)
        assert stopped.state == ops_pb.ScavengeStatus.DONE, f"stop when none runs: {stopped}"

    def check_consumer_group(self):
        groups = ps_grpc.PersistentSubscriptionsStub(self.channel)
        s = unique("group")
        self.append(s, pb.ExpectedVersion(no_stream=EMPTY), [new_event("Job") for _ in range(6)])
        target = ps_pb.PersistentTarget(stream=s)
        groups.Create(ps_pb.CreatePersistentSubscriptionRequest(target=target, group="py"), timeout=TIMEOUT)
        try:
            groups.Create(ps_pb.CreatePersistentSubscriptionRequest(target=target, group="py"), timeout=TIMEOUT)
            raise AssertionError("a group was created twice")
        except grpc.RpcError as e:
            assert e.code() == grpc.StatusCode.ALREADY_EXISTS, f"create twice: {e.code()}"
        acks = queue.Queue()
        acks.put(ps_pb.PersistentReadRequest(options=ps_pb.PersistentReadOptions(target=target, group="py", buffer_size=3)))

        def requests():
            while True:
                r = acks.get()
                if r is None:
                    return
                yield r

        call = groups.Read(requests(), timeout=TIMEOUT)
        first = next(call)
        assert first.WhichOneof("kind") == "confirmation", f"first answer: {first}"
        revisions = []
        for answer in call:
            assert answer.WhichOneof("kind") == "event", f"answer: {answer}"
            revisions.append(answer.event.event.revision)
            acks.put(ps_pb.PersistentReadRequest(ack=ps_pb.PersistentAck(positions=[answer.event.event.position])))
            if len(revisions) == 6:
                break
        assert revisions == list(range(6)), f"delivered {revisions}"
        # The acks travel on the open call: end it once they have arrived.
        deadline = time.monotonic() + TIMEOUT
        while True:
            info = groups.GetInfo(ps_pb.GetPersistentSubscriptionInfoRequest(target=target, group="py"), timeout=TIMEOUT)
            if info.acked_total == 6:
                break
            assert time.monotonic() < deadline, f"acks not counted: {info}"
            time.sleep(0.02)
        acks.put(None)
        call.cancel()
        groups.Delete(ps_pb.DeletePersistentSubscriptionRequest(target=target, group="py"), timeout=TIMEOUT)

    def check_multi_append(self):
        a, b, c = unique("ma"), unique("mb"), unique("mc")
        head = self.head()
        request = pb.MultiAppendRequest(
            appends=[
                pb.AppendRequest(stream=a, expected=pb.ExpectedVersion(no_stream=EMPTY), events=[new_event("A"), new_event("A")]),
                pb.AppendRequest(stream=b, expected=pb.ExpectedVersion(any=EMPTY), events=[new_event("B")]),
            ],
            checks=[pb.StreamCheck(stream=c, expected=pb.ExpectedVersion(no_stream=EMPTY))],
        )
        r = self.stub.MultiAppend(request, timeout=TIMEOUT)
        assert r.WhichOneof("result") == "success", f"multi-append: {r}"
        got = [(x.stream, x.next_expected_revision, x.position) for x in r.success.results]
        assert got == [(a, 1, head + 1), (b, 0, head + 2)], f"results {got}"
        # A failed check writes nothing and is named.
        bad = pb.MultiAppendRequest(
            appends=[pb.AppendRequest(stream=b, expected=pb.ExpectedVersion(any=EMPTY), events=[new_event("B")])],
            checks=[pb.StreamCheck(stream=a, expected=pb.ExpectedVersion(no_stream=EMPTY))],
        )
        r = self.stub.MultiAppend(bad, timeout=TIMEOUT)
        assert r.WhichOneof("result") == "wrong_expected_version", f"conflict: {r}"
        named = [(x.stream, x.current_revision) for x in r.wrong_expected_version.conflicts]
        assert named == [(a, 1)], f"conflicts {named}"
        assert self.head() == head + 3, "the conflict wrote something"

    def check_pipelined_append(self):
        stream = unique("pipe")
        any_ = pb.ExpectedVersion(any=EMPTY)
        requests = [
            pb.PipelinedAppendRequest(
                correlation_id=10 + i,
                append=pb.AppendRequest(stream=stream, expected=any_, events=[new_event("P")]),
            )
            for i in range(20)
        ]
        # A malformed one is answered with an error; the call goes on.
        requests.insert(
            5,
            pb.PipelinedAppendRequest(
                correlation_id=1,
                append=pb.AppendRequest(stream="", expected=any_, events=[new_event("P")]),
            ),
        )
        answers = {
            a.correlation_id: a
            for a in self.stub.PipelinedAppend(iter(requests), timeout=TIMEOUT)
        }
        assert sorted(answers) == [1] + list(range(10, 30)), f"answered {sorted(answers)}"
        bad = answers[1]
        assert bad.WhichOneof("outcome") == "error", f"malformed: {bad}"
        assert bad.error.code == grpc.StatusCode.INVALID_ARGUMENT.value[0], f"code {bad.error.code}"
        for i in range(10, 30):
            a = answers[i]
            assert a.WhichOneof("outcome") == "result", f"{i}: {a}"
            assert a.result.WhichOneof("result") == "success", f"{i}: {a}"
        assert len(self.read(stream=stream)) == 20, "every pipelined append is stored"


def wait_ready(stub, deadline_s=30):
    start = time.monotonic()
    while True:
        try:
            stub.Stats(pb.StatsRequest(), timeout=2)
            return
        except grpc.RpcError as e:
            if time.monotonic() - start > deadline_s:
                raise AssertionError(f"server not ready after {deadline_s} s: {e}")
            time.sleep(0.1)


def main():
    if len(sys.argv) != 2:
        print(__doc__)
        return 2
    channel = grpc.insecure_channel(sys.argv[1])
    checks = Checks(channel)
    wait_ready(checks.stub)
    status = run_checks(checks, "python")
    channel.close()
    return status


if __name__ == "__main__":
    sys.exit(main())
