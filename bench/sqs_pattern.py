#!/usr/bin/env python3
"""The SQS consumer Python teams write today (the seeds' SQS polling loop): the SQS row's baseline.

One boto3 long-poll loop: ``receive_message`` (up to 10 messages, 1 s wait), a POST of each
message body to ``--url`` in turn over one keep-alive connection (``x-sqs-message-id`` header),
then ``delete_message_batch`` of the delivered ones. ``--loops`` runs that many loops in threads
(the seeds scale by running more containers; one loop per container is what they show).

    sqs_pattern.py --queue-url URL --url http://127.0.0.1:8080/events --messages N [--loops 1]

The AWS SDK's own variables (``AWS_ENDPOINT_URL``, keys, region) say where SQS is. It stops once
N messages are delivered and prints one JSON line: ``{"messages": N, "seconds": ...}``.
"""

from __future__ import annotations

import argparse
import http.client
import json
import sys
import threading
import time
import urllib.parse

import boto3


def post(state: dict, parsed: urllib.parse.ParseResult, body: bytes, message_id: str) -> int:
    """POSTs one message over the loop's keep-alive connection, reconnecting once if the server
    closed it; the status."""
    for attempt in (1, 2):
        if state.get("connection") is None:
            state["connection"] = http.client.HTTPConnection(parsed.hostname, parsed.port, timeout=30)
        try:
            state["connection"].request("POST", parsed.path, body=body, headers={"x-sqs-message-id": message_id})
            response = state["connection"].getresponse()
            response.read()
            return response.status
        except (http.client.HTTPException, OSError):
            state["connection"].close()
            state["connection"] = None
            if attempt == 2:
                raise
    return 0


def loop(queue_url: str, target: str, wanted: int, done: list[int], lock: threading.Lock, errors: list[str]) -> None:
    try:
        run_loop(queue_url, target, wanted, done, lock)
    except Exception as error:  # noqa: BLE001 - reported, and the process fails
        errors.append(f"{type(error).__name__}: {error}")


def run_loop(queue_url: str, target: str, wanted: int, done: list[int], lock: threading.Lock) -> None:
    sqs = boto3.client("sqs")
    parsed = urllib.parse.urlparse(target)
    state: dict = {}
    while True:
        with lock:
            if done[0] >= wanted:
                return
        answer = sqs.receive_message(QueueUrl=queue_url, MaxNumberOfMessages=10, WaitTimeSeconds=1)
        delivered = []
        for message in answer.get("Messages", []):
            status = post(state, parsed, message["Body"].encode(), message["MessageId"])
            if 200 <= status < 300:
                delivered.append({"Id": str(len(delivered)), "ReceiptHandle": message["ReceiptHandle"]})
        if delivered:
            sqs.delete_message_batch(QueueUrl=queue_url, Entries=delivered)
            with lock:
                done[0] += len(delivered)


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--queue-url", required=True)
    p.add_argument("--url", required=True)
    p.add_argument("--messages", type=int, required=True)
    p.add_argument("--loops", type=int, default=1)
    args = p.parse_args()
    done, lock, errors = [0], threading.Lock(), []
    started = time.monotonic()
    threads = [
        threading.Thread(target=loop, args=(args.queue_url, args.url, args.messages, done, lock, errors), daemon=True)
        for _ in range(args.loops)
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    print(json.dumps({"messages": done[0], "seconds": time.monotonic() - started, "loops": args.loops}))
    if errors:
        print(f"sqs_pattern: {errors[0]}", file=sys.stderr)
        return 1
    return 0


if __name__ == "__main__":
    sys.exit(main())
