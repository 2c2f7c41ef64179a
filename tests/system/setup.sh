#!/bin/sh
# Runs inside the booted container (from /mnt/host): installs what the host built and the
# shipped unit files, writes the configs. $1 = Synapse's port.
set -eu
port="$1"
install -m 0755 /mnt/host/synapse-token-auth /usr/bin/synapse-token-auth
/opt/synapse/bin/pip install -q --no-deps /mnt/host/wheel/*.whl
cp /mnt/host/dist/synapse-token-auth.socket /mnt/host/dist/synapse-token-auth.service /etc/systemd/system/
cp /mnt/host/matrix-synapse.service /etc/systemd/system/

install -d -m 0755 /etc/synapse-token-auth
# The secret: root-only, handed to the daemon as a credential and to nobody else.
install -m 0600 /mnt/host/jwt-secret /etc/synapse-token-auth/jwt-secret
cat > /etc/synapse-token-auth/config.toml <<TOML
secret_credential = "jwt-secret"
allow_registration = true
TOML

install -d -m 0700 -o matrix-synapse -g matrix-synapse /var/lib/matrix-synapse
install -d -m 0755 /etc/matrix-synapse
cd /mnt/host
/opt/synapse/bin/python -c '
import sys; sys.path.insert(0, "/mnt/host")
from pathlib import Path
import homeserver_config
path = homeserver_config.write(Path("/var/lib/matrix-synapse"), int(sys.argv[1]),
    {"verifier": {"socket": "/run/synapse-token-auth/verify.sock", "timeout_seconds": 5}})
Path("/etc/matrix-synapse/homeserver.yaml").write_text(path.read_text())
' "$port"
chown -R matrix-synapse:matrix-synapse /var/lib/matrix-synapse
systemctl daemon-reload
systemctl start synapse-token-auth.socket
