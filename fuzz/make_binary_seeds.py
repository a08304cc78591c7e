#!/usr/bin/env python3
"""Writes the binary seeds of fuzz/corpus/ (the text ones are written by hand): protobuf envelopes
(proto/envelope.proto) for envelope_fuzz and a container runtime's HTTP/2 answers for grpc_h2_fuzz
(RFC 9113 frames, HPACK literals). Run from fuzz/: ./make_binary_seeds.py"""
import struct


def varint(n):
    out = b''
    while True:
        b, n = n & 0x7f, n >> 7
        if n:
            out += bytes([b | 0x80])
        else:
            return out + bytes([b])


def ld(field, payload):  # length-delimited field
    if isinstance(payload, str):
        payload = payload.encode()
    return varint(field << 3 | 2) + varint(len(payload)) + payload


def vi(field, n):  # varint field
    return varint(field << 3) + varint(n)


def write(path, data):
    with open(path, 'wb') as f:
        f.write(data)


# envelope: Envelope{header=1, route=2, content=3}; Header{msg_id=1, parent_msg_id=2, timestamp=3,
# resource_version=4, sync=5, type=6}; Route{source=1, destination=2, group=3, operation=4, resource=5}
hdr = ld(1, "6a1d9c7e-3f0b-4c2a-8e5d-9b7c6a5f4e31") + vi(3, 1714557600123) + ld(4, "4711") + vi(5, 1)
route = ld(1, "edgecontroller") + ld(3, "resource") + ld(4, "insert") + ld(5, "default/configmap/cfg")
content = '{"kind":"ConfigMap","metadata":{"name":"cfg","namespace":"default"},"data":{"a":"1"}}'
write('corpus/envelope/insert.pb', ld(1, hdr) + ld(2, route) + ld(3, content))
hdr = ld(1, "2b9e4d1c") + ld(2, "6a1d9c7e") + vi(3, 5)
route = ld(4, "response") + ld(5, "default/pod/nginx")
write('corpus/envelope/response.pb', ld(1, hdr) + ld(2, route) + ld(3, '"OK"'))


# grpc_h2: what the runtime sends on the socket.
def frame(typ, flags, stream, payload=b''):
    return struct.pack('>I', len(payload))[1:] + bytes([typ, flags]) + struct.pack('>I', stream) + payload


def hstr(s):
    s = s.encode()
    return bytes([len(s)]) + s


def lit(name, value):  # literal header field, new name, without indexing
    return b'\x00' + hstr(name) + hstr(value)


SETTINGS, SETTINGS_ACK = frame(4, 0, 0), frame(4, 1, 0)
STATUS_200 = b'\x88'  # static table entry 8
GRPC_CT = b'\x0f\x10' + hstr("application/grpc")  # content-type (static 31), literal value


def grpc(body):
    return b'\x00' + struct.pack('>I', len(body)) + body


version = b'\x0a\x020.1\x12\x0acontainerd'
write('corpus/grpc_h2/ok', SETTINGS + SETTINGS_ACK + frame(1, 4, 1, STATUS_200 + GRPC_CT) +
      frame(0, 0, 1, grpc(version)) + frame(1, 5, 1, lit("grpc-status", "0")))
write('corpus/grpc_h2/not_found', SETTINGS + frame(1, 5, 1, STATUS_200 + GRPC_CT + lit("grpc-status", "5") +
                                                  lit("grpc-message", "pod%20%22x%22%20not%20found")))
write('corpus/grpc_h2/refused', SETTINGS + SETTINGS_ACK + frame(3, 0, 1, struct.pack('>I', 7)))
write('corpus/grpc_h2/goaway', SETTINGS + frame(7, 0, 0, struct.pack('>II', 0, 0) + b'bye'))
msg = grpc(b'abcdef')
write('corpus/grpc_h2/split_data', SETTINGS + frame(1, 4, 1, STATUS_200 + GRPC_CT) + frame(0, 0, 1, msg[:4]) +
      frame(0, 0, 1, msg[4:]) + frame(1, 5, 1, lit("grpc-status", "0")))
write('corpus/grpc_h2/http1', b'HTTP/1.1 400 Bad Request\r\nContent-Length: 0\r\n\r\n')
