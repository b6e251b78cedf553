#!/usr/bin/env python3
"""Google's own Protobuf library as the reference for the decoding tests.

    proto_reference.py DESCRIPTOR_SET MESSAGE_TYPE < messages.jsonl

Reads a FileDescriptorSet (what `protoc --descriptor_set_out --include_imports` writes) and, for
each input line (one message in the proto3 JSON mapping), builds the message with
`google.protobuf.json_format.Parse`, and prints one JSON line: its wire bytes in hex and
`json_format.MessageToDict` of it — the proto3 JSON mapping as Google implements it, which the
sidecar's output must equal.
"""

import json
import sys

from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory


def main() -> int:
    path, name = sys.argv[1], sys.argv[2]
    files = descriptor_pb2.FileDescriptorSet()
    with open(path, "rb") as f:
        files.ParseFromString(f.read())
    pool = descriptor_pool.DescriptorPool()
    for file in files.file:
        pool.Add(file)
    cls = message_factory.GetMessageClass(pool.FindMessageTypeByName(name))
    for line in sys.stdin:
        if not line.strip():
            continue
        message = json_format.Parse(line, cls())
        wire = message.SerializeToString(deterministic=True)
        print(json.dumps({"hex": wire.hex(), "json": json_format.MessageToDict(message)}))
    return 0


if __name__ == "__main__":
    sys.exit(main())
