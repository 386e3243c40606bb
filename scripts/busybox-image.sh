#!/bin/sh
# Make the busybox base image from Debian's busybox-static and import it into berthd.
# usage: scripts/busybox-image.sh [NAME[:TAG]]   (default busybox:latest)
# Honours BERTH_HOST / DOCKER_HOST like the berth CLI.
set -eu
name=${1:-busybox:latest}
here=$(cd "$(dirname "$0")" && pwd)
berth=${BERTH:-berth}
command -v "$berth" >/dev/null 2>&1 || berth="$here/../.venv/bin/berth"
tar=$(mktemp /tmp/berth-rootfs.XXXXXX)
trap 'rm -f "$tar"' EXIT
"$here/mkrootfs.sh" "$tar"
"$berth" import --change 'CMD ["sh"]' "$tar" "$name"
