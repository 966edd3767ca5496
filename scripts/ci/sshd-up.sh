#!/usr/bin/env bash
# Start a throw-away OpenSSH server on 127.0.0.1 for grokwatch's integration
# tests. Adapted from the shared recipe sshd-loopback.sh.
#
#   eval "$(scripts/ci/sshd-up.sh [DIR])"   # DIR defaults to a fresh mktemp dir
#   ... tests use $SSHD_PORT $SSHD_USER $SSHD_CLIENT_KEY $SSHD_KNOWN_HOSTS ...
#   scripts/ci/sshd-up.sh DIR --restart     # start it again: same port, same keys
#   scripts/ci/sshd-down.sh "$SSHD_DIR"
#
# Needs: /usr/sbin/sshd, or root + apt-get to install openssh-server (~7 s).
# Exit status: 0 up; 1 failed; 3 cannot run here (no sshd and no way to
# install it), so a test fixture can tell "skip" from "broken".
#
# Everything (host key, client key, authorized_keys, known_hosts, config, log,
# pid file) lives in DIR. Only public-key auth is enabled; no passwords.
# Installs openssh-server via apt-get if sshd is missing (needs root for that).
# stdout carries only the KEY=value lines; diagnostics go to stderr.
set -euo pipefail

die() { echo "sshd-up: ERROR: $*" >&2; exit 1; }
cannot() { echo "sshd-up: CANNOT: $*" >&2; exit 3; }

SSHD=/usr/sbin/sshd
if [ ! -x "$SSHD" ]; then
  [ "$(id -u)" = 0 ] || cannot "openssh-server not installed and not root"
  command -v apt-get >/dev/null || cannot "openssh-server not installed and no apt-get"
  echo "sshd-up: installing openssh-server" >&2
  # Debian images often ship /usr/sbin/policy-rc.d (exit 101) so the package
  # does not auto-start the system sshd on port 22 -- that is what we want.
  apt-get update -q >&2 || die "apt-get update failed"
  DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends openssh-server >&2 \
    || die "apt-get install openssh-server failed"
fi

DIR=${1:-$(mktemp -d /tmp/sshd-loopback.XXXXXX)}
mkdir -p "$DIR"; DIR=$(cd "$DIR" && pwd)
[ -f "$DIR/sshd.pid" ] && kill -0 "$(cat "$DIR/sshd.pid")" 2>/dev/null \
  && die "an sshd from $DIR is already running (pid $(cat "$DIR/sshd.pid"))"

# sshd started as root insists on its privilege-separation dir.
if [ "$(id -u)" = 0 ]; then install -d -m 0755 /run/sshd; fi

wait_port() {
  for _ in $(seq 50); do
    (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null && return 0
    sleep 0.1
  done
  (exec 3<>"/dev/tcp/127.0.0.1/$1") 2>/dev/null \
    || die "sshd not listening on 127.0.0.1:$1; log: $(tail -5 "$DIR/sshd.log")"
}
emit() {
  cat <<EOF
SSHD_DIR=$DIR
SSHD_HOST=127.0.0.1
SSHD_PORT=$1
SSHD_USER=$(id -un)
SSHD_PID=$(cat "$DIR/sshd.pid")
SSHD_CLIENT_KEY=$DIR/client_ed25519
SSHD_HOST_KEY_PUB=$DIR/host_ed25519.pub
SSHD_KNOWN_HOSTS=$DIR/known_hosts
EOF
}

# --restart: same config, port and keys (a client that knew the server
# before reconnects without noticing).
if [ "${2:-}" = --restart ]; then
  [ -f "$DIR/sshd_config" ] || die "--restart: no $DIR/sshd_config"
  PORT=$(sed -n 's/^Port //p' "$DIR/sshd_config")
  "$SSHD" -f "$DIR/sshd_config" -E "$DIR/sshd.log" || die "sshd failed, see $DIR/sshd.log"
  wait_port "$PORT"
  emit "$PORT"
  exit 0
fi

# Keys: one host key, one client key, both without passphrase.
rm -f "$DIR"/host_ed25519* "$DIR"/client_ed25519*
ssh-keygen -q -t ed25519 -N '' -C sshd-loopback-host   -f "$DIR/host_ed25519"
ssh-keygen -q -t ed25519 -N '' -C sshd-loopback-client -f "$DIR/client_ed25519"
cp "$DIR/client_ed25519.pub" "$DIR/authorized_keys"
chmod 600 "$DIR/authorized_keys"

# Pick a free port (tiny race window between probing and sshd binding).
PORT=${SSHD_PORT:-$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1", 0)); print(s.getsockname()[1])')}

# known_hosts entry in the "[host]:port" form used by OpenSSH and paramiko
# for non-22 ports.
echo "[127.0.0.1]:$PORT $(cut -d' ' -f1,2 "$DIR/host_ed25519.pub")" > "$DIR/known_hosts"

cat > "$DIR/sshd_config" <<EOF
ListenAddress 127.0.0.1
Port $PORT
HostKey $DIR/host_ed25519
PidFile $DIR/sshd.pid
AuthorizedKeysFile $DIR/authorized_keys
PubkeyAuthentication yes
PasswordAuthentication no
KbdInteractiveAuthentication no
# PAM is not needed for key auth, and keeps account checks simple.
UsePAM no
# StrictModes would reject keys under world-writable /tmp.
StrictModes no
PermitRootLogin prohibit-password
Subsystem sftp internal-sftp
LogLevel VERBOSE
EOF

"$SSHD" -t -f "$DIR/sshd_config" || die "sshd config test failed"
# sshd must be started with an absolute path; it daemonizes and writes PidFile.
"$SSHD" -f "$DIR/sshd_config" -E "$DIR/sshd.log" || die "sshd failed, see $DIR/sshd.log"

# Wait until the port accepts connections (usually < 0.1 s).
wait_port "$PORT"
emit "$PORT"
