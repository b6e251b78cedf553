#!/usr/bin/env python3
"""The Kafka-to-HTTP consumer that Python teams write today: the benchmark's Python baseline.

A confluent-kafka ``Consumer`` (consumer group, ``enable.auto.commit=false``,
``auto.offset.reset=earliest``) is polled with ``consume(num_messages=500, timeout=...)`` in an
executor thread; the event loop puts the records on a bounded ``asyncio.Queue``; a pool of
``--workers`` aiohttp tasks POSTs each record (body = the value, ``x-kafka-*`` headers) to
``--url``; offsets are committed per partition up to the highest contiguous completed offset,
once a second and at the end.

    python_pattern.py --bootstrap B --topic T --records N --url http://127.0.0.1:8080/events \
        [--workers 64]

It stops once N records are complete (delivered, or given up after retries) and prints one JSON
line: ``{"records": N, "seconds": <first to last completion>, ...}``.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import concurrent.futures
import functools
import json
import sys
import time
import uuid

import aiohttp
from confluent_kafka import Consumer, KafkaError, KafkaException, TopicPartition

RETRYABLE_STATUS = {408, 429, 500, 502, 503, 504}


def log(message: str) -> None:
    print(f"python_pattern: {message}", file=sys.stderr, flush=True)


class OffsetTracker:
    """Per partition, the first offset not yet complete (what Kafka wants committed)."""

    def __init__(self) -> None:
        self.next: dict[int, int] = {}
        self.done_ahead: dict[int, set[int]] = {}
        self.committed: dict[int, int] = {}

    def seen(self, partition: int, offset: int) -> None:
        """Called in consume order, before the record is handed to a worker."""
        if partition not in self.next:
            self.next[partition] = offset
            self.done_ahead[partition] = set()

    def complete(self, partition: int, offset: int) -> None:
        nxt = self.next[partition]
        if offset != nxt:
            if offset > nxt:
                self.done_ahead[partition].add(offset)
            return
        ahead = self.done_ahead[partition]
        nxt += 1
        while nxt in ahead:
            ahead.remove(nxt)
            nxt += 1
        self.next[partition] = nxt

    def pending_commits(self, topic: str) -> list[TopicPartition]:
        return [
            TopicPartition(topic, partition, nxt)
            for partition, nxt in self.next.items()
            if self.committed.get(partition) != nxt
        ]

    def mark_committed(self, offsets: list[TopicPartition]) -> None:
        for tp in offsets:
            self.committed[tp.partition] = tp.offset


class Progress:
    def __init__(self, target: int) -> None:
        self.target = target
        self.delivered = 0
        self.failed = 0
        self.retries = 0
        self.first: float | None = None
        self.last: float | None = None
        self.finished = asyncio.Event()

    @property
    def completed(self) -> int:
        return self.delivered + self.failed

    def complete(self, ok: bool) -> None:
        now = time.time()
        if self.first is None:
            self.first = now
        self.last = now
        if ok:
            self.delivered += 1
        else:
            self.failed += 1
        if self.completed >= self.target:
            self.finished.set()


def headers_of(message) -> dict[str, str]:
    headers = {
        "content-type": "application/octet-stream",
        "x-kafka-topic": message.topic(),
        "x-kafka-partition": str(message.partition()),
        "x-kafka-offset": str(message.offset()),
        "x-delivery-attempt": "1",
    }
    key = message.key()
    if key is not None:
        headers["x-kafka-key"] = base64.b64encode(key).decode("ascii")
    _kind, timestamp = message.timestamp()
    if timestamp is not None and timestamp >= 0:
        headers["x-kafka-timestamp"] = str(timestamp)
    return headers


async def deliver(session: aiohttp.ClientSession, url: str, message, args, progress: Progress) -> bool:
    """POST one record; retry 5xx/429/408 and connection errors with backoff; give up on 4xx."""
    headers = headers_of(message)
    body = message.value() or b""
    backoff = args.initial_backoff
    for attempt in range(1, args.max_attempts + 1):
        headers["x-delivery-attempt"] = str(attempt)
        try:
            async with session.post(url, data=body, headers=headers) as response:
                await response.read()
                if 200 <= response.status < 300:
                    return True
                if response.status not in RETRYABLE_STATUS:
                    return False  # a team would log it (or produce it to a DLQ) and move on
        except (TimeoutError, aiohttp.ClientError) as error:
            if attempt == args.max_attempts:
                log(f"giving up on {message.topic()}/{message.partition()}@{message.offset()}: {error!r}")
        if attempt < args.max_attempts:
            progress.retries += 1
            await asyncio.sleep(backoff)
            backoff = min(backoff * 2, 5.0)
    return False


async def worker(queue: asyncio.Queue, session, args, tracker: OffsetTracker, progress: Progress) -> None:
    while True:
        message = await queue.get()
        try:
            ok = await deliver(session, args.url, message, args, progress)
            tracker.complete(message.partition(), message.offset())
            progress.complete(ok)
        finally:
            queue.task_done()


def commit(consumer: Consumer, tracker: OffsetTracker, topic: str, asynchronous: bool) -> None:
    offsets = tracker.pending_commits(topic)
    if not offsets:
        return
    try:
        consumer.commit(offsets=offsets, asynchronous=asynchronous)
        tracker.mark_committed(offsets)
    except KafkaException as error:
        log(f"commit failed: {error}")


async def poll_loop(consumer, executor, queue, tracker, progress, args, stop: asyncio.Event) -> None:
    loop = asyncio.get_running_loop()
    consume = functools.partial(consumer.consume, num_messages=args.batch, timeout=args.poll_timeout)
    last_commit = time.monotonic()
    while not stop.is_set():
        messages = await loop.run_in_executor(executor, consume)
        for message in messages:
            error = message.error()
            if error is not None:
                if error.code() != KafkaError._PARTITION_EOF:
                    log(f"consume error: {error}")
                continue
            tracker.seen(message.partition(), message.offset())
            await queue.put(message)
        if time.monotonic() - last_commit >= args.commit_interval:
            commit(consumer, tracker, args.topic, asynchronous=True)
            last_commit = time.monotonic()


async def run(args) -> int:
    consumer = Consumer(
        {
            "bootstrap.servers": args.bootstrap,
            "group.id": args.group or f"python-pattern-{uuid.uuid4().hex[:12]}",
            "enable.auto.commit": False,
            "auto.offset.reset": "earliest",
            "client.id": "python-pattern",
        }
    )
    consumer.subscribe([args.topic])
    executor = concurrent.futures.ThreadPoolExecutor(max_workers=1, thread_name_prefix="kafka-poll")
    queue: asyncio.Queue = asyncio.Queue(maxsize=args.queue_size)
    tracker = OffsetTracker()
    progress = Progress(args.records)
    stop = asyncio.Event()
    connector = aiohttp.TCPConnector(limit=args.workers)
    timeout = aiohttp.ClientTimeout(total=args.request_timeout)
    status = 0
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        workers = [asyncio.create_task(worker(queue, session, args, tracker, progress)) for _ in range(args.workers)]
        poller = asyncio.create_task(poll_loop(consumer, executor, queue, tracker, progress, args, stop))
        waiter = asyncio.create_task(progress.finished.wait())
        done, _ = await asyncio.wait({waiter, poller}, timeout=args.timeout, return_when=asyncio.FIRST_COMPLETED)
        if poller in done and poller.exception() is not None:
            log(f"poll loop failed: {poller.exception()!r}")
            status = 1
        elif waiter not in done:
            log(f"timed out after {args.timeout}s with {progress.completed}/{args.records} records")
            status = 1
        stop.set()
        waiter.cancel()
        try:
            await asyncio.wait_for(poller, timeout=10)
        except (TimeoutError, Exception):  # noqa: BLE001 - shutting down either way
            poller.cancel()
        for task in workers:
            task.cancel()
        await asyncio.gather(*workers, return_exceptions=True)
    loop = asyncio.get_running_loop()
    await loop.run_in_executor(executor, functools.partial(commit, consumer, tracker, args.topic, False))
    await loop.run_in_executor(executor, consumer.close)
    executor.shutdown(wait=True)
    seconds = (progress.last - progress.first) if progress.first is not None else 0.0
    print(
        json.dumps(
            {
                "records": progress.completed,
                "seconds": round(seconds, 6),
                "delivered": progress.delivered,
                "failed": progress.failed,
                "retries": progress.retries,
                "first_unix": progress.first,
                "last_unix": progress.last,
            }
        ),
        flush=True,
    )
    return status


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--bootstrap", required=True)
    parser.add_argument("--topic", required=True)
    parser.add_argument("--records", type=int, required=True, help="stop after this many records")
    parser.add_argument("--url", required=True, help="the application's endpoint")
    parser.add_argument("--workers", type=int, default=64, help="concurrent HTTP deliveries")
    parser.add_argument("--group", default=None, help="consumer group (default: a fresh one)")
    parser.add_argument("--queue-size", type=int, default=1000, help="asyncio.Queue maxsize")
    parser.add_argument("--batch", type=int, default=500, help="consume(num_messages=...)")
    parser.add_argument("--poll-timeout", type=float, default=0.1, help="consume(timeout=...) seconds")
    parser.add_argument("--commit-interval", type=float, default=1.0, help="seconds between commits")
    parser.add_argument("--max-attempts", type=int, default=3)
    parser.add_argument("--initial-backoff", type=float, default=0.1)
    parser.add_argument("--request-timeout", type=float, default=30.0)
    parser.add_argument("--timeout", type=float, default=3600.0, help="give up after this many seconds")
    args = parser.parse_args(argv)
    if args.records < 1 or args.workers < 1 or args.queue_size < 1:
        parser.error("--records, --workers and --queue-size must be positive")
    return args


def main(argv: list[str] | None = None) -> int:
    return asyncio.run(run(parse_args(argv)))


if __name__ == "__main__":
    sys.exit(main())
