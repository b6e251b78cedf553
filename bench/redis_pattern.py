#!/usr/bin/env python3
"""The Redis Streams consumer Python teams write today (the seeds' stream consumer): the REDIS
row's baseline.

One ``redis.asyncio`` loop, as in the seeds: ``XREADGROUP`` (10 entries, 5 s block), a POST of
each entry's ``data`` field to ``--url`` in turn over one aiohttp session (``x-redis-id``
header), ``XACK`` of each delivered entry. ``--loops`` runs that many loops (consumers of the
group) in one event loop; the seeds run one per process.

    redis_pattern.py --redis-url redis://127.0.0.1:6390 --stream S --group G \
        --url http://127.0.0.1:8080/events --messages N [--loops 1]

It stops once N entries are delivered and prints one JSON line: ``{"messages": N, "seconds": ...}``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time

import aiohttp
import redis.asyncio as redis


async def consume(client: redis.Redis, http: aiohttp.ClientSession, args: argparse.Namespace, name: str,
                  done: list[int]) -> None:  # fmt: skip
    while done[0] < args.messages:
        answer = await client.xreadgroup(args.group, name, {args.stream: ">"}, count=10, block=5000)
        for _stream, entries in answer or []:
            for entry_id, fields in entries:
                async with http.post(args.url, data=fields.get(b"data", b""),
                                     headers={"x-redis-id": entry_id.decode()}) as response:  # fmt: skip
                    await response.read()
                    ok = 200 <= response.status < 300
                if ok:
                    await client.xack(args.stream, args.group, entry_id)
                    done[0] += 1


async def run(args: argparse.Namespace) -> dict:
    client = redis.from_url(args.redis_url)
    done = [0]
    started = time.monotonic()
    async with aiohttp.ClientSession() as http:
        await asyncio.gather(*(consume(client, http, args, f"py-{i}", done) for i in range(args.loops)))
    seconds = time.monotonic() - started
    await client.aclose()
    return {"messages": done[0], "seconds": seconds, "loops": args.loops}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--redis-url", required=True)
    p.add_argument("--stream", required=True)
    p.add_argument("--group", required=True)
    p.add_argument("--url", required=True)
    p.add_argument("--messages", type=int, required=True)
    p.add_argument("--loops", type=int, default=1)
    args = p.parse_args()
    try:
        report = asyncio.run(run(args))
    except Exception as error:  # noqa: BLE001 - reported, and the process fails
        print(f"redis_pattern: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
