#!/bin/sh
# Make a minimal root filesystem tarball from Debian's static busybox (busybox-static).
# usage: scripts/mkrootfs.sh OUT.tar
# Import it as an image with:  berth import --change 'CMD ["sh"]' OUT.tar busybox:latest
set -eu
out=${1:?usage: mkrootfs.sh OUT.tar}
bb=${BUSYBOX:-/bin/busybox}
[ -x "$bb" ] || { echo "mkrootfs: $bb not found (apt-get install busybox-static)" >&2; exit 1; }
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
chmod 755 "$tmp"
cd "$tmp"
mkdir -p bin sbin usr/bin usr/sbin etc root home tmp var/tmp proc sys dev
cp "$bb" bin/busybox
for a in $(bin/busybox --list); do
    [ "$a" = busybox ] || [ -e "bin/$a" ] || ln -s busybox "bin/$a"
done
chmod 1777 tmp var/tmp
chmod 700 root
cat > etc/passwd <<'P'
root:x:0:0:root:/root:/bin/sh
daemon:x:1:1:daemon:/usr/sbin:/bin/false
www-data:x:33:33:www-data:/var/www:/bin/false
nobody:x:65534:65534:nobody:/nonexistent:/bin/false
P
cat > etc/group <<'G'
root:x:0:
daemon:x:1:
wheel:x:10:root
www-data:x:33:
users:x:100:
nogroup:x:65534:
G
echo "berth" > etc/hostname
cd - >/dev/null
tar -C "$tmp" --numeric-owner --owner=0 --group=0 --sort=name --mtime=@0 -cf "$out" .
