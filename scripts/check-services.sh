#!/usr/bin/env bash
# The tests use the real PostgreSQL (127.0.0.1:5432, trust auth, database `test`) and RabbitMQ
# (127.0.0.1:5672, guest/guest). Say clearly when one is missing, and how to start it.
set -u
ok=1
if ! (exec 3<>/dev/tcp/127.0.0.1/5432) 2>/dev/null; then
  echo "PostgreSQL is not listening on 127.0.0.1:5432 (start it: pg_ctlcluster --skip-systemctl-redirect \$(ls /etc/postgresql) main start)" >&2
  ok=0
fi
if ! (exec 3<>/dev/tcp/127.0.0.1/5672) 2>/dev/null; then
  echo "RabbitMQ is not listening on 127.0.0.1:5672 (start it: rabbitmq-server -detached)" >&2
  ok=0
fi
[ "$ok" = 1 ] || exit 1
