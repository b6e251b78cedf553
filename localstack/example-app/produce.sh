#!/usr/bin/env bash
# Produces sample orders to the `orders` topic with rpk (run in the Redpanda image by
# localstack/docker-compose.yml): a burst of BURST records, then one every INTERVAL seconds
# until TOTAL. Every 10th record is not JSON (the application answers 400: dead letter).
# Keys are customer ids, so records of one customer stay in one partition.
set -euo pipefail

BURST="${BURST:-40}"
TOTAL="${TOTAL:-300}"
INTERVAL="${INTERVAL:-2}"
TOPIC="${TOPIC:-orders}"

record() { # order id -> "key value" line for `rpk topic produce -f '%k %v\n'`
  local id="$1"
  if (( id % 10 == 0 )); then
    printf 'customer-%d not-json-order-%d\n' $((id % 8)) "$id"
  else
    printf 'customer-%d {"order_id":%d,"customer":"customer-%d","amount_cents":%d}\n' \
      $((id % 8)) "$id" $((id % 8)) $((id * 137 % 10000))
  fi
}

produce() { rpk topic produce "$TOPIC" -f '%k %v\n' -H 'content-type:application/json' >/dev/null; }

echo "producer: ${BURST} orders at once, then one every ${INTERVAL}s up to ${TOTAL}"
for ((id = 1; id <= BURST; id++)); do record "$id"; done | produce
for ((id = BURST + 1; id <= TOTAL; id++)); do
  sleep "$INTERVAL"
  record "$id" | produce
  if (( id % 10 == 0 )); then echo "producer: ${id} orders produced"; fi
done
echo "producer: done (${TOTAL} orders)"
