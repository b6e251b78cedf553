#!/usr/bin/env python3
"""The official serializers, for the decoding tests: records as producers really frame them.

    serialize.py confluent REGISTRY_URL TOPIC avro|json|protobuf SCHEMA_FILE < records.jsonl
    serialize.py glue REGISTRY_NAME TOPIC avro|json SCHEMA_FILE [compress] < records.jsonl

Each input line is one record as JSON; each output line is the serialized bytes in hex.

confluent: confluent-kafka's AvroSerializer, JSONSerializer and ProtobufSerializer against the
Confluent-compatible registry at REGISTRY_URL (they register the schema under `<TOPIC>-value`).
For protobuf, SCHEMA_FILE is a FileDescriptorSet and the message type is `shop.Order`; the input
lines are in the proto3 JSON mapping.

glue: AWS's aws-glue-schema-registry (KafkaSerializer's schema registration and its codec, with
zlib when `compress`) against the Glue endpoint in AWS_ENDPOINT_URL_GLUE (moto in the test bed);
the registry REGISTRY_NAME is created if missing.
"""

import json
import sys


def confluent(url: str, topic: str, kind: str, schema_path: str, lines: list[str]) -> list[bytes]:
    from confluent_kafka.schema_registry import SchemaRegistryClient
    from confluent_kafka.serialization import MessageField, SerializationContext

    client = SchemaRegistryClient({"url": url})
    context = SerializationContext(topic, MessageField.VALUE)
    if kind == "protobuf":
        from google.protobuf import descriptor_pb2, descriptor_pool, json_format, message_factory

        from confluent_kafka.schema_registry.protobuf import ProtobufSerializer

        files = descriptor_pb2.FileDescriptorSet()
        with open(schema_path, "rb") as f:
            files.ParseFromString(f.read())
        pool = descriptor_pool.DescriptorPool()
        for file in files.file:
            pool.Add(file)
        cls = message_factory.GetMessageClass(pool.FindMessageTypeByName("shop.Order"))
        serializer = ProtobufSerializer(cls, client, {"use.deprecated.format": False, "skip.known.types": True})
        return [serializer(json_format.Parse(line, cls()), context) for line in lines]
    with open(schema_path) as f:
        schema = f.read()
    if kind == "avro":
        from confluent_kafka.schema_registry.avro import AvroSerializer

        serializer = AvroSerializer(client, schema)
    else:
        from confluent_kafka.schema_registry.json_schema import JSONSerializer

        serializer = JSONSerializer(schema, client)
    return [serializer(json.loads(line), context) for line in lines]


def glue(registry: str, topic: str, kind: str, schema_path: str, compress: bool, lines: list[str]) -> list[bytes]:
    import os

    import boto3
    from aws_schema_registry import SchemaRegistryClient
    from aws_schema_registry.codec import encode
    from aws_schema_registry.serde import DataAndSchema, KafkaSerializer

    glue_client = boto3.client("glue", endpoint_url=os.environ["AWS_ENDPOINT_URL_GLUE"])
    try:
        glue_client.create_registry(RegistryName=registry)
    except glue_client.exceptions.AlreadyExistsException:
        pass
    with open(schema_path) as f:
        definition = f.read()
    if kind == "avro":
        from aws_schema_registry.avro import AvroSchema

        schema = AvroSchema(definition)
    else:
        from aws_schema_registry.jsonschema import JsonSchema

        schema = JsonSchema(definition)
    serializer = KafkaSerializer(SchemaRegistryClient(glue_client, registry_name=registry))
    out = []
    for line in lines:
        data = json.loads(line)
        if compress:
            version = serializer._get_schema_version(topic, schema)
            out.append(encode(schema.write(data), version.version_id, compression=True))
        else:
            out.append(serializer.serialize(topic, DataAndSchema(data, schema)))
    return out


def main() -> int:
    lines = [line for line in sys.stdin if line.strip()]
    if sys.argv[1] == "confluent":
        out = confluent(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], lines)
    else:
        out = glue(sys.argv[2], sys.argv[3], sys.argv[4], sys.argv[5], len(sys.argv) > 6, lines)
    for record in out:
        print(record.hex())
    return 0


if __name__ == "__main__":
    sys.exit(main())
