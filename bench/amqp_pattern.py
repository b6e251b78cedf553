#!/usr/bin/env python3
"""The RabbitMQ consumer Python teams write today (the seeds' aio-pika consumer): the AMQP row's
baseline.

``queue.iterator()`` on one channel with ``--prefetch`` unacknowledged messages, each message
handled in turn inside ``message.process(requeue=False)`` (acknowledged when the block ends,
rejected without requeue when it raises): a POST of the body to ``--url`` over one aiohttp
session (``x-amqp-message-id`` header), an exception unless the answer is 2xx.

    amqp_pattern.py --amqp-url amqp://guest:guest@127.0.0.1:5682/ --queue Q \
        --url http://127.0.0.1:8080/events --messages N [--prefetch 256]

It stops once N messages are delivered and prints one JSON line: ``{"messages": N, "seconds": ...}``.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time

import aio_pika
import aiohttp


async def run(args: argparse.Namespace) -> dict:
    connection = await aio_pika.connect_robust(args.amqp_url)
    done = 0
    started = time.monotonic()
    async with connection, aiohttp.ClientSession() as http:
        channel = await connection.channel()
        await channel.set_qos(prefetch_count=args.prefetch)
        queue = await channel.get_queue(args.queue)
        async with queue.iterator() as messages:
            async for message in messages:
                async with message.process(requeue=False):
                    headers = {"x-amqp-message-id": message.message_id or ""}
                    async with http.post(args.url, data=message.body, headers=headers) as response:
                        await response.read()
                        if not 200 <= response.status < 300:
                            raise RuntimeError(f"application answered {response.status}")
                done += 1
                if done >= args.messages:
                    break
    return {"messages": done, "seconds": time.monotonic() - started, "prefetch": args.prefetch}


def main() -> int:
    p = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    p.add_argument("--amqp-url", required=True)
    p.add_argument("--queue", required=True)
    p.add_argument("--url", required=True)
    p.add_argument("--messages", type=int, required=True)
    p.add_argument("--prefetch", type=int, default=256)
    args = p.parse_args()
    try:
        report = asyncio.run(run(args))
    except Exception as error:  # noqa: BLE001 - reported, and the process fails
        print(f"amqp_pattern: {type(error).__name__}: {error}", file=sys.stderr)
        return 1
    print(json.dumps(report))
    return 0


if __name__ == "__main__":
    sys.exit(main())
