"""A client of shoal's public gRPC API in Python, its stubs generated from proto/
(grpcio-tools): over TLS, trusting the cluster CA and presenting a client
certificate, it writes a key and reads it back; then it tries the same node in
plaintext, which a secure node refuses (UNAUTHENTICATED: it speaks TLS only). With
SHOAL_PASSWORD (root's password) it also reads with the CA alone, as root by
password (`authorization: Basic` metadata on each call), and with a wrong password.

usage: kv_tls.py STUBS_DIR HOST:PORT CA_CRT CLIENT_CRT CLIENT_KEY
Prints the value read, then `plaintext: CODE` (the gRPC status code of the refusal),
then with a password `by password: VALUE` and `wrong password: CODE`.
"""
import base64
import os
import sys

stubs, addr, ca, crt, key = sys.argv[1:6]
sys.path.insert(0, stubs)

import grpc  # noqa: E402
from shoal.v1 import kv_pb2, kv_pb2_grpc  # noqa: E402


def read(path):
    with open(path, "rb") as f:
        return f.read()


creds = grpc.ssl_channel_credentials(
    root_certificates=read(ca), private_key=read(key), certificate_chain=read(crt)
)
with grpc.secure_channel(addr, creds) as channel:
    kv = kv_pb2_grpc.KvStub(channel)
    kv.Put(kv_pb2.PutRequest(key=b"python", value=b"over tls"), timeout=20)
    got = kv.Get(kv_pb2.GetRequest(key=b"python"), timeout=20)
    print(got.kv.value.decode())

with grpc.insecure_channel(addr) as channel:
    try:
        kv_pb2_grpc.KvStub(channel).Get(kv_pb2.GetRequest(key=b"python"), timeout=5)
        print("plaintext: answered")
    except grpc.RpcError as e:
        print(f"plaintext: {e.code().name}")

password = os.environ.get("SHOAL_PASSWORD")
if password:
    ca_only = grpc.ssl_channel_credentials(root_certificates=read(ca))
    for label, pw in [("by password", password), ("wrong password", password + "!")]:
        basic = base64.b64encode(f"root:{pw}".encode()).decode()
        with grpc.secure_channel(addr, ca_only) as channel:
            try:
                got = kv_pb2_grpc.KvStub(channel).Get(
                    kv_pb2.GetRequest(key=b"python"),
                    timeout=20,
                    metadata=[("authorization", f"Basic {basic}")],
                )
                print(f"{label}: {got.kv.value.decode()}")
            except grpc.RpcError as e:
                print(f"{label}: {e.code().name}")
