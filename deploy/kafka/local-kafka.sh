#!/usr/bin/env bash
# Single-node Apache Kafka (KRaft, broker+controller) for local development and tests.
#
# The broker comes from Maven Central as plain jars (see pom.xml next to this script)
# because dev/CI machines here can reach package registries but not
# downloads.apache.org, GitHub releases or container registries. Only the first run
# needs the network; the jars are cached under $KAFKA_HOME_CACHE.
#
# Usage: local-kafka.sh start|stop|status|reset   (plaintext on $KAFKA_PORT, SASL on $KAFKA_SASL_PORT,
#                                                  SASL over TLS on $KAFKA_SSL_PORT)
#        local-kafka.sh topics ARGS...        e.g. topics --list
#        local-kafka.sh produce TOPIC [ARGS...] (stdin lines, "key:value")
#        local-kafka.sh consume TOPIC [ARGS...] (from the beginning, with keys and headers)
set -euo pipefail

# Class names below match the 3.9.x layout (4.x moved several of them).
KAFKA_VERSION="${KAFKA_VERSION:-3.9.2}"
SCRIPT_DIR="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
KAFKA_HOME_CACHE="${KAFKA_HOME_CACHE:-$HOME/.cache/telecmi-bridge/kafka-$KAFKA_VERSION}"
LIBS="$KAFKA_HOME_CACHE/libs"
KAFKA_PORT="${KAFKA_PORT:-9092}"
# Derived from KAFKA_PORT so that two instances on different ports never share a controller port.
KAFKA_CONTROLLER_PORT="${KAFKA_CONTROLLER_PORT:-$((KAFKA_PORT + 1))}"
# A second listener requiring SASL (SCRAM-SHA-256, SCRAM-SHA-512 or PLAIN) for this user, to test
# authenticated connections; the plaintext listener stays open for everything else.
KAFKA_SASL_PORT="${KAFKA_SASL_PORT:-$((KAFKA_PORT + 2))}"
KAFKA_SASL_USER="${KAFKA_SASL_USER:-bridge}"
KAFKA_SASL_PASSWORD="${KAFKA_SASL_PASSWORD:-bridge-secret-0123}"
# The same SASL user over TLS, to test encrypted connections and certificate verification.
KAFKA_SSL_PORT="${KAFKA_SSL_PORT:-$((KAFKA_PORT + 3))}"
KAFKA_DATA_DIR="${KAFKA_DATA_DIR:-${TMPDIR:-/tmp}/telecmi-bridge-kafka}"
KAFKA_HEAP_OPTS="${KAFKA_HEAP_OPTS:--Xmx512m -Xms256m}"
KAFKA_START_TIMEOUT="${KAFKA_START_TIMEOUT:-90}"
KAFKA_STOP_TIMEOUT="${KAFKA_STOP_TIMEOUT:-30}"
BOOTSTRAP="127.0.0.1:$KAFKA_PORT"
PID_FILE="$KAFKA_DATA_DIR/broker.pid"
LOG_FILE="$KAFKA_DATA_DIR/broker.log"
# reset only wipes directories carrying this marker, so a mistyped KAFKA_DATA_DIR cannot rm -rf $HOME.
MARKER="$KAFKA_DATA_DIR/.telecmi-local-kafka"
# A CA made for this data dir and the broker certificate it signed; clients trust $TLS_DIR/ca.pem.
TLS_DIR="$KAFKA_DATA_DIR/tls"
# Guards throwaway local key material only, and must be readable by the broker's config anyway.
TLS_STOREPASS=local-kafka-tls

BROKER_CLASS=kafka.Kafka
STORAGE_CLASS=kafka.tools.StorageTool
TOPIC_CLASS=org.apache.kafka.tools.TopicCommand
PRODUCER_CLASS=kafka.tools.ConsoleProducer
CONSUMER_CLASS=org.apache.kafka.tools.consumer.ConsoleConsumer

log() { printf 'local-kafka: %s\n' "$*" >&2; }
die() { log "$*"; exit 1; }

fetch_jars() {
  [[ -f "$LIBS/.complete" ]] && return 0
  command -v java >/dev/null || die "java not found: install a JDK >= 17 (e.g. apt-get install openjdk-17-jdk-headless)"
  command -v mvn >/dev/null || die "mvn not found: Kafka is fetched from Maven Central with Maven (e.g. apt-get install maven)"
  log "fetching Apache Kafka $KAFKA_VERSION jars from Maven into $LIBS (first run only)..."
  local t0=$SECONDS tmp="$LIBS.partial"
  rm -rf "$tmp"
  # Plain `mvn` so the user's settings.xml (mirrors, proxies) apply; a partial dir
  # is only promoted once complete, so an interrupted fetch is retried next time.
  # Output is captured because Maven 3.8 emits stray ANSI codes even with -B -q.
  mkdir -p "$KAFKA_HOME_CACHE"
  if ! mvn -B -q -f "$SCRIPT_DIR/pom.xml" dependency:copy-dependencies \
    -Dkafka.version="$KAFKA_VERSION" -DincludeScope=runtime -DoutputDirectory="$tmp" \
    >"$KAFKA_HOME_CACHE/mvn.log" 2>&1; then
    cat "$KAFKA_HOME_CACHE/mvn.log" >&2
    die "Maven could not fetch Kafka $KAFKA_VERSION (output above)"
  fi
  rm -rf "$LIBS" && mv "$tmp" "$LIBS" && touch "$LIBS/.complete"
  log "fetched $(find "$LIBS" -name '*.jar' | wc -l) jars in $((SECONDS - t0))s"
}

# Tools log WARN+ to stderr only, so `topics --list` output stays machine-readable.
run_tool() {
  local cls=$1; shift
  java -Xmx256m -Dlog4j.configuration="file:$KAFKA_DATA_DIR/tools-log4j.properties" \
    -cp "$LIBS/*" "$cls" "$@"
}

write_configs() {
  mkdir -p "$KAFKA_DATA_DIR/logs"
  touch "$MARKER"
  # Regenerated on every start so port changes apply; the KRaft quorum is static (voters list),
  # which works unchanged on 3.9 and 4.x without a --standalone bootstrap.
  cat >"$KAFKA_DATA_DIR/server.properties" <<EOF
process.roles=broker,controller
node.id=1
controller.quorum.voters=1@127.0.0.1:$KAFKA_CONTROLLER_PORT
listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,CONTROLLER://127.0.0.1:$KAFKA_CONTROLLER_PORT,SASL_PLAINTEXT://127.0.0.1:$KAFKA_SASL_PORT,SASL_SSL://127.0.0.1:$KAFKA_SSL_PORT
advertised.listeners=PLAINTEXT://127.0.0.1:$KAFKA_PORT,SASL_PLAINTEXT://127.0.0.1:$KAFKA_SASL_PORT,SASL_SSL://127.0.0.1:$KAFKA_SSL_PORT
controller.listener.names=CONTROLLER
inter.broker.listener.name=PLAINTEXT
listener.security.protocol.map=CONTROLLER:PLAINTEXT,PLAINTEXT:PLAINTEXT,SASL_PLAINTEXT:SASL_PLAINTEXT,SASL_SSL:SASL_SSL
sasl.enabled.mechanisms=SCRAM-SHA-256,SCRAM-SHA-512,PLAIN
listener.name.sasl_plaintext.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_plaintext.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_plaintext.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_$KAFKA_SASL_USER="$KAFKA_SASL_PASSWORD";
listener.name.sasl_ssl.scram-sha-256.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.scram-sha-512.sasl.jaas.config=org.apache.kafka.common.security.scram.ScramLoginModule required;
listener.name.sasl_ssl.plain.sasl.jaas.config=org.apache.kafka.common.security.plain.PlainLoginModule required user_$KAFKA_SASL_USER="$KAFKA_SASL_PASSWORD";
listener.name.sasl_ssl.ssl.keystore.type=PKCS12
listener.name.sasl_ssl.ssl.keystore.location=$TLS_DIR/broker.p12
listener.name.sasl_ssl.ssl.keystore.password=$TLS_STOREPASS
listener.name.sasl_ssl.ssl.key.password=$TLS_STOREPASS
log.dirs=$KAFKA_DATA_DIR/logs
num.partitions=1
auto.create.topics.enable=false
offsets.topic.replication.factor=1
transaction.state.log.replication.factor=1
transaction.state.log.min.isr=1
group.initial.rebalance.delay.ms=0
EOF
  cat >"$KAFKA_DATA_DIR/log4j.properties" <<'EOF'
log4j.rootLogger=INFO, stdout
log4j.appender.stdout=org.apache.log4j.ConsoleAppender
log4j.appender.stdout.layout=org.apache.log4j.PatternLayout
log4j.appender.stdout.layout.ConversionPattern=[%d] %p %m (%c)%n
log4j.logger.kafka.request.logger=WARN
EOF
  cat >"$KAFKA_DATA_DIR/tools-log4j.properties" <<'EOF'
log4j.rootLogger=WARN, stderr
log4j.appender.stderr=org.apache.log4j.ConsoleAppender
log4j.appender.stderr.Target=System.err
log4j.appender.stderr.layout=org.apache.log4j.PatternLayout
log4j.appender.stderr.layout.ConversionPattern=[%d] %p %m (%c)%n
EOF
  # Short timeouts: the readiness probe must fail fast instead of the admin client's 60 s default.
  printf 'request.timeout.ms=4000\ndefault.api.timeout.ms=5000\n' >"$KAFKA_DATA_DIR/probe.properties"
}

# Made on start rather than at format so data dirs formatted before the TLS listener existed get
# it too, and kept so clients can keep trusting ca.pem across restarts. keytool (part of every
# JDK) instead of openssl, which a minimal machine may lack. Built in a partial dir that is only
# promoted once complete, so an interrupted run starts over.
ensure_tls() {
  [[ -f "$TLS_DIR/broker.p12" && -f "$TLS_DIR/ca.pem" ]] && return 0
  command -v keytool >/dev/null || die "keytool not found: it ships with the JDK (e.g. apt-get install openjdk-17-jdk-headless)"
  local tmp="$TLS_DIR.partial" days=3650
  rm -rf "$tmp" && mkdir -p "$tmp"
  local kt=(keytool -noprompt -storetype PKCS12 -storepass "$TLS_STOREPASS")
  # librdkafka checks the broker's name (ssl.endpoint.identification.algorithm=https), hence
  # the SAN for both ways clients address this broker. The whole chain is imported as the
  # reply, so the broker presents the CA too and the keystore needs no separate trusted entry.
  if ! {
    "${kt[@]}" -genkeypair -alias ca -keyalg RSA -keysize 2048 -validity "$days" \
      -dname "CN=telecmi-bridge local-kafka CA" -ext bc:c -ext KU=keyCertSign,cRLSign \
      -keystore "$tmp/ca.p12" &&
      "${kt[@]}" -exportcert -rfc -alias ca -keystore "$tmp/ca.p12" -file "$tmp/ca.pem" &&
      "${kt[@]}" -genkeypair -alias broker -keyalg RSA -keysize 2048 -validity "$days" \
        -dname "CN=localhost" -keystore "$tmp/broker.p12" &&
      "${kt[@]}" -certreq -alias broker -keystore "$tmp/broker.p12" -file "$tmp/broker.csr" &&
      "${kt[@]}" -gencert -alias ca -keystore "$tmp/ca.p12" -infile "$tmp/broker.csr" \
        -outfile "$tmp/broker.pem" -rfc -validity "$days" -ext SAN=IP:127.0.0.1,DNS:localhost \
        -ext KU=digitalSignature,keyEncipherment -ext EKU=serverAuth &&
      cat "$tmp/broker.pem" "$tmp/ca.pem" >"$tmp/chain.pem" &&
      "${kt[@]}" -importcert -alias broker -keystore "$tmp/broker.p12" -file "$tmp/chain.pem"
  } >"$tmp/keytool.log" 2>&1; then
    cat "$tmp/keytool.log" >&2
    die "generating the TLS keystore in $tmp failed (keytool output above)"
  fi
  rm -f "$tmp/broker.csr" "$tmp/chain.pem" "$tmp/keytool.log"
  rm -rf "$TLS_DIR" && mv "$tmp" "$TLS_DIR"
  log "generated a CA and broker certificate in $TLS_DIR (clients trust $TLS_DIR/ca.pem)"
}

# Pid from the pid file, only if that process is still our broker (pids get reused).
broker_pid() {
  local pid
  pid="$(cat "$PID_FILE" 2>/dev/null)" || return 1
  [[ "$pid" =~ ^[0-9]+$ ]] && kill -0 "$pid" 2>/dev/null || return 1
  ps -ww -p "$pid" -o args= 2>/dev/null | grep -qF "$BROKER_CLASS $KAFKA_DATA_DIR/server.properties" || return 1
  echo "$pid"
}

# A real metadata round trip, not just an open port.
answering() {
  [[ -f "$LIBS/.complete" && -f "$KAFKA_DATA_DIR/probe.properties" ]] || return 1
  timeout 20 java -Xmx128m -Dlog4j.configuration="file:$KAFKA_DATA_DIR/tools-log4j.properties" \
    -cp "$LIBS/*" "$TOPIC_CLASS" --bootstrap-server "$BOOTSTRAP" \
    --command-config "$KAFKA_DATA_DIR/probe.properties" --list >/dev/null 2>&1
}

port_busy() { (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null; }

wait_ready() {
  local pid=$1 t0=$SECONDS
  while ((SECONDS - t0 < KAFKA_START_TIMEOUT)); do
    if ! kill -0 "$pid" 2>/dev/null; then
      log "broker process $pid exited during startup; last lines of $LOG_FILE:"
      tail -n 40 "$LOG_FILE" >&2
      rm -f "$PID_FILE"
      return 1
    fi
    if answering; then
      log "broker ready on $BOOTSTRAP (SASL on 127.0.0.1:$KAFKA_SASL_PORT, SASL_SSL on 127.0.0.1:$KAFKA_SSL_PORT with CA $TLS_DIR/ca.pem) (pid $pid) after $((SECONDS - t0))s"
      return 0
    fi
    sleep 1
  done
  log "broker (pid $pid) not answering on $BOOTSTRAP after ${KAFKA_START_TIMEOUT}s; last lines of $LOG_FILE:"
  tail -n 40 "$LOG_FILE" >&2
  # Left running on purpose: a later `start` resumes waiting, `stop` ends it.
  log "the process is left running; '$0 stop' ends it"
  return 1
}

cmd_start() {
  local pid
  if pid="$(broker_pid)"; then
    # Alive: either already serving (no-op) or still starting from an earlier call.
    answering && { log "already running on $BOOTSTRAP (pid $pid)"; return 0; }
    wait_ready "$pid"; return
  fi
  fetch_jars
  local p
  for p in "$KAFKA_PORT" "$KAFKA_CONTROLLER_PORT" "$KAFKA_SASL_PORT" "$KAFKA_SSL_PORT"; do
    # Otherwise the readiness probe could be answered by someone else's broker.
    port_busy "$p" && die "127.0.0.1:$p is already in use; set KAFKA_PORT / KAFKA_CONTROLLER_PORT / KAFKA_SASL_PORT / KAFKA_SSL_PORT"
  done
  write_configs
  ensure_tls
  if [[ ! -f "$KAFKA_DATA_DIR/logs/meta.properties" ]]; then
    local cluster_id
    cluster_id="$(run_tool "$STORAGE_CLASS" random-uuid)"
    # The SCRAM credentials are part of the cluster's initial metadata.
    run_tool "$STORAGE_CLASS" format -t "$cluster_id" -c "$KAFKA_DATA_DIR/server.properties" \
      --add-scram "SCRAM-SHA-256=[name=$KAFKA_SASL_USER,password=$KAFKA_SASL_PASSWORD]" \
      --add-scram "SCRAM-SHA-512=[name=$KAFKA_SASL_USER,password=$KAFKA_SASL_PASSWORD]" >/dev/null \
      || die "formatting $KAFKA_DATA_DIR/logs failed"
    log "formatted $KAFKA_DATA_DIR/logs (cluster id $cluster_id)"
  fi
  local heap
  read -r -a heap <<<"$KAFKA_HEAP_OPTS"
  printf '=== %s starting Kafka %s\n' "$(date '+%F %T')" "$KAFKA_VERSION" >>"$LOG_FILE"
  # setsid detaches from the terminal's session so Ctrl-C / closing the shell does not kill it;
  # the inner shell records its own pid and execs java, so the pid file is java's pid.
  local detach=(setsid)
  command -v setsid >/dev/null || detach=(nohup)
  # shellcheck disable=SC2016 # $$ and $@ must expand in the inner shell, not here.
  "${detach[@]}" bash -c 'echo $$ >"$0"; exec "$@"' "$PID_FILE" \
    java "${heap[@]}" -XX:+UseG1GC -Djava.awt.headless=true \
    -Dlog4j.configuration="file:$KAFKA_DATA_DIR/log4j.properties" \
    -cp "$LIBS/*" "$BROKER_CLASS" "$KAFKA_DATA_DIR/server.properties" \
    >>"$LOG_FILE" 2>&1 </dev/null &
  local t0=$SECONDS
  while [[ ! -s "$PID_FILE" ]] && ((SECONDS - t0 < 5)); do sleep 0.1; done
  pid="$(cat "$PID_FILE" 2>/dev/null)" || die "broker did not start; see $LOG_FILE"
  log "started broker pid $pid, logs in $LOG_FILE; waiting up to ${KAFKA_START_TIMEOUT}s"
  wait_ready "$pid"
}

cmd_stop() {
  local pid t0=$SECONDS
  pid="$(broker_pid)" || { log "not running"; rm -f "$PID_FILE"; return 0; }
  kill -TERM "$pid"
  while kill -0 "$pid" 2>/dev/null && ((SECONDS - t0 < KAFKA_STOP_TIMEOUT)); do sleep 0.5; done
  if kill -0 "$pid" 2>/dev/null; then
    log "no clean shutdown after ${KAFKA_STOP_TIMEOUT}s; sending SIGKILL to $pid"
    kill -KILL "$pid" 2>/dev/null || true
  fi
  rm -f "$PID_FILE"
  log "stopped (pid $pid) after $((SECONDS - t0))s; data kept in $KAFKA_DATA_DIR"
}

cmd_status() {
  local pid
  if pid="$(broker_pid)"; then
    answering && { echo "running (pid $pid) on $BOOTSTRAP"; return 0; }
    echo "process $pid alive but not answering on $BOOTSTRAP"; return 1
  fi
  echo "stopped"; return 3
}

cmd_reset() {
  cmd_stop
  [[ -d "$KAFKA_DATA_DIR" ]] || return 0
  [[ -f "$MARKER" ]] || die "refusing to wipe $KAFKA_DATA_DIR: not created by this script"
  rm -rf "$KAFKA_DATA_DIR"
  log "wiped $KAFKA_DATA_DIR"
}

need_running() { broker_pid >/dev/null || die "broker is not running; run: $0 start"; }

case "${1:-}" in
  start) cmd_start ;;
  stop) cmd_stop ;;
  status) cmd_status ;;
  reset) cmd_reset ;;
  topics) shift; need_running; run_tool "$TOPIC_CLASS" --bootstrap-server "$BOOTSTRAP" "$@" ;;
  produce)
    [[ $# -ge 2 ]] || die "usage: $0 produce TOPIC [ARGS...]"
    need_running
    run_tool "$PRODUCER_CLASS" --bootstrap-server "$BOOTSTRAP" --topic "$2" \
      --property parse.key=true --property key.separator=: "${@:3}" ;;
  consume)
    [[ $# -ge 2 ]] || die "usage: $0 consume TOPIC [ARGS...]"
    need_running
    run_tool "$CONSUMER_CLASS" --bootstrap-server "$BOOTSTRAP" --topic "$2" --from-beginning \
      --property print.key=true --property print.headers=true "${@:3}" ;;
  *) echo "usage: $0 start|stop|status|reset|topics ARGS...|produce TOPIC|consume TOPIC" >&2; exit 2 ;;
esac
