#!/usr/bin/env bash
# Runs a command with a mosquitto broker on a free loopback port, its port in
# FACEGATE_TEST_MQTT_PORT (the sync tests then use it instead of an in-process rumqttd).
#
#   tests/with-mosquitto.sh cargo test --test sync_mqtt
set -euo pipefail
dir=$(mktemp -d)
port=$(python3 -c 'import socket; s = socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')
cat > "$dir/mosquitto.conf" <<CONF
listener $port 127.0.0.1
allow_anonymous true
pid_file $dir/mosquitto.pid
user root
max_queued_messages 100000
log_dest file $dir/mosquitto.log
CONF
mosquitto -c "$dir/mosquitto.conf" -d
stop() {
    if [ -f "$dir/mosquitto.pid" ]; then kill "$(cat "$dir/mosquitto.pid")" 2>/dev/null || true; fi
    rm -rf "$dir"
}
trap stop EXIT
for _ in $(seq 100); do
    (exec 3<>"/dev/tcp/127.0.0.1/$port") 2>/dev/null && break
    sleep 0.1
done
FACEGATE_TEST_MQTT_PORT=$port "$@"
