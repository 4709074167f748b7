"""Cross-language check of Strata's security (API.md section 5).

A Python client generated from the proto talks to a `strata` binary that
serves TLS with authentication on: it trusts the CA run.sh generated,
authenticates with Basic credentials and with an API key, and sees the
codes of section 5 for missing credentials, a wrong password, a role that
is not enough, a stream ACL and a revoked key. Run through
tests/python/run.sh.

Usage: strata_security_test.py HOST:PORT CA_FILE ADMIN_PASSWORD
"""

import base64
import sys
import time
import uuid

import grpc
from checklib import run_checks
from google.protobuf import empty_pb2

from strata.v1 import streams_pb2 as pb
from strata.v1 import streams_pb2_grpc as pb_grpc
from strata.v1 import users_pb2 as users_pb
from strata.v1 import users_pb2_grpc as users_grpc

TIMEOUT = 20  # seconds, for every call


def basic(user, password):
    token = base64.b64encode(f"{user}:{password}".encode()).decode()
    return (("authorization", f"Basic {token}"),)


def bearer(key):
    return (("authorization", f"Bearer {key}"),)


def event(event_type="E"):
    return pb.EventData(
        id=pb.Uuid(raw=uuid.uuid4().bytes), type=event_type, data=b"{}"
    )


def code_of(call):
    try:
        call()
        return grpc.StatusCode.OK
    except grpc.RpcError as e:
        return e.code()


class Checks:
    def __init__(self, channel, admin_password):
        self.streams = pb_grpc.StreamsStub(channel)
        self.users = users_grpc.UsersStub(channel)
        self.admin = basic("admin", admin_password)

    def append(self, stream, metadata):
        return self.streams.Append(
            pb.AppendRequest(
                stream=stream,
                expected=any_version(),
                events=[event()],
            ),
            metadata=metadata,
            timeout=TIMEOUT,
        )

    def check_no_credentials_are_unauthenticated(self):
        got = code_of(lambda: self.streams.Stats(pb.StatsRequest(), timeout=TIMEOUT))
        assert got == grpc.StatusCode.UNAUTHENTICATED, got

    def check_admin_over_tls(self):
        stats = self.streams.Stats(pb.StatsRequest(), metadata=self.admin, timeout=TIMEOUT)
        assert stats.format_version >= 1

    def check_wrong_password_and_unknown_user_read_the_same(self):
        codes, messages = [], []
        for md in (basic("admin", "not the password"), basic("nobody-here", "whatever1")):
            try:
                self.streams.Stats(pb.StatsRequest(), metadata=md, timeout=TIMEOUT)
                raise AssertionError("accepted")
            except grpc.RpcError as e:
                codes.append(e.code())
                messages.append(e.details())
        assert codes == [grpc.StatusCode.UNAUTHENTICATED] * 2, codes
        assert messages[0] == messages[1], messages

    def check_roles_and_acls(self):
        self.users.Create(
            users_pb.CreateUserRequest(user="py-reader", password="reader-pass", roles=["reader"]),
            metadata=self.admin,
            timeout=TIMEOUT,
        )
        self.users.Create(
            users_pb.CreateUserRequest(user="py-writer", password="writer-pass", roles=["writer"]),
            metadata=self.admin,
            timeout=TIMEOUT,
        )
        reader = basic("py-reader", "reader-pass")
        writer = basic("py-writer", "writer-pass")
        assert code_of(lambda: self.append("py-orders", reader)) == grpc.StatusCode.PERMISSION_DENIED
        assert code_of(lambda: self.append("py-orders", writer)) == grpc.StatusCode.OK
        # An ACL naming only the admin role for reads.
        self.streams.SetStreamMetadata(
            pb.SetStreamMetadataRequest(
                stream="py-orders",
                expected=any_version(),
                metadata=pb.StreamMetadata(acl=pb.StreamAcl(read=["$role:admin"])),
            ),
            metadata=self.admin,
            timeout=TIMEOUT,
        )
        read = lambda md: list(  # noqa: E731
            self.streams.Read(
                pb.ReadRequest(stream="py-orders", direction=pb.FORWARDS),
                metadata=md,
                timeout=TIMEOUT,
            )
        )
        assert code_of(lambda: read(reader)) == grpc.StatusCode.PERMISSION_DENIED
        assert sum(len(r.events) for r in read(self.admin)) == 1

    def check_api_key_until_revoked(self):
        self.users.Create(
            users_pb.CreateUserRequest(user="py-bot", password="bot-password", roles=["writer"]),
            metadata=self.admin,
            timeout=TIMEOUT,
        )
        key = self.users.CreateApiKey(
            users_pb.CreateApiKeyRequest(user="py-bot", name="py"),
            metadata=self.admin,
            timeout=TIMEOUT,
        ).key
        assert code_of(lambda: self.append("py-bot-stream", bearer(key))) == grpc.StatusCode.OK
        self.users.RevokeApiKey(
            users_pb.RevokeApiKeyRequest(user="py-bot", name="py"),
            metadata=self.admin,
            timeout=TIMEOUT,
        )
        got = code_of(lambda: self.append("py-bot-stream", bearer(key)))
        assert got == grpc.StatusCode.UNAUTHENTICATED, got


def any_version():
    return pb.ExpectedVersion(any=empty_pb2.Empty())


def main():
    if len(sys.argv) != 4:
        print(__doc__)
        return 2
    address, ca_file, admin_password = sys.argv[1:]
    with open(ca_file, "rb") as f:
        credentials = grpc.ssl_channel_credentials(root_certificates=f.read())
    channel = grpc.secure_channel(address, credentials)
    checks = Checks(channel, admin_password)
    start = time.monotonic()
    while True:
        try:
            grpc.channel_ready_future(channel).result(timeout=2)
            break
        except grpc.FutureTimeoutError:
            if time.monotonic() - start > 30:
                print("the TLS server is not ready after 30 s")
                return 1
    status = run_checks(checks, "python security")
    channel.close()
    return status


if __name__ == "__main__":
    sys.exit(main())
