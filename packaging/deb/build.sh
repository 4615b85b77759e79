#!/bin/sh
# Builds understudy_<version>_amd64.deb with dpkg-deb (make deb runs it).
#
#   build.sh UNDERSTUDY CONSUL SYNCTHING OUTDIR
#
# UNDERSTUDY, CONSUL and SYNCTHING are the binaries to ship (amd64,
# stripped); VERSION is understudy's version (git describe), made a Debian
# version here; SOURCE_DATE_EPOCH dates the changelog and the man pages.
# Prints the path of the package it wrote.
set -eu

understudy=$1 consul=$2 syncthing=$3 out=$4
here=$(cd "$(dirname "$0")" && pwd)
units=$here/../systemd
: "${SOURCE_DATE_EPOCH:=$(date +%s)}"
export SOURCE_DATE_EPOCH
maintainer=${DEB_MAINTAINER:-understudy maintainers <understudy-ha@users.noreply.github.com>}

# A Debian version: a release tag v1.2.3 is 1.2.3-1; anything else (a
# commit, a dirty tree) sorts before the first release as
# 0~git<date>.<describe>-1. The revision -1 makes it a non-native package,
# whose changelog policy names changelog.Debian.gz.
v=${VERSION:-dev}
case $v in
v[0-9]*) upstream=$(printf '%s' "${v#v}" | tr -- '-' '+') ;;
*) upstream=0~git$(date -u -d "@$SOURCE_DATE_EPOCH" +%Y%m%d).$(printf '%s' "$v" | tr -c 'A-Za-z0-9.+~\n' '+') ;;
esac
debversion=$upstream-1

stage=$(mktemp -d)
trap 'rm -rf "$stage"' EXIT
d=$stage/root
doc=$d/usr/share/doc/understudy

install -D -m 0755 "$understudy" "$d/usr/bin/understudy"
install -D -m 0755 "$consul" "$d/usr/lib/understudy/bin/consul"
install -D -m 0755 "$syncthing" "$d/usr/lib/understudy/bin/syncthing"
for u in "$units"/*.service; do
	install -D -m 0644 "$u" "$d/lib/systemd/system/$(basename "$u")"
done
install -D -m 0644 "$here/understudy.hcl" "$d/etc/understudy/understudy.hcl"
install -D -m 0644 "$here/logrotate" "$d/etc/logrotate.d/understudy"

# Completion and man pages from the cobra commands themselves.
install -d -m 0755 "$d/usr/share/bash-completion/completions" "$d/usr/share/zsh/vendor-completions" "$d/usr/share/man/man1"
"$understudy" completion bash >"$d/usr/share/bash-completion/completions/understudy"
"$understudy" completion zsh >"$d/usr/share/zsh/vendor-completions/_understudy"
chmod 0644 "$d/usr/share/bash-completion/completions/understudy" "$d/usr/share/zsh/vendor-completions/_understudy"
"$understudy" docs --man-dir "$d/usr/share/man/man1"
for m in "$d"/usr/share/man/man1/*.1; do
	chmod 0644 "$m"
	gzip -9n "$m"
done

install -D -m 0644 "$here/copyright" "$doc/copyright"
install -m 0644 "$here/../../README.md" "$doc/README.md"
gzip -9n "$doc/README.md"
{
	printf 'understudy (%s) unstable; urgency=medium\n\n' "$debversion"
	printf '  * Built from understudy %s.\n\n' "$v"
	printf ' -- %s  %s\n' "$maintainer" "$(date -u -R -d "@$SOURCE_DATE_EPOCH")"
} >"$doc/changelog.Debian"
gzip -9n "$doc/changelog.Debian"
chmod 0644 "$doc/changelog.Debian.gz"

install -d -m 0755 "$d/DEBIAN"
for s in postinst prerm postrm; do
	install -m 0755 "$here/$s" "$d/DEBIAN/$s"
done
printf '/etc/understudy/understudy.hcl\n/etc/logrotate.d/understudy\n' >"$d/DEBIAN/conffiles"
(cd "$d" && find . -path ./DEBIAN -prune -o -type f -printf '%P\0' | LC_ALL=C sort -z | xargs -0 md5sum) >"$d/DEBIAN/md5sums"
size=$(du -sk --exclude=DEBIAN "$d" | cut -f1)
cat >"$d/DEBIAN/control" <<CONTROL
Package: understudy
Version: $debversion
Architecture: amd64
Maintainer: $maintainer
Installed-Size: $size
Depends: adduser, libc6 (>= 2.34), postgresql-15 | postgresql, postgresql-client-15 | postgresql-client
Recommends: logrotate
Suggests: haproxy
Section: database
Priority: optional
Homepage: https://github.com/understudy-ha/understudy
Description: high availability for PostgreSQL, services and files
 understudy keeps one node of a small cluster active and the others hot
 standbys: PostgreSQL streaming replication, services that run on the
 active node only, directories mirrored by Syncthing, all coordinated
 through Consul by a check-runner and a handler-runner on each node. When
 the active node fails, the best standby takes over.
 .
 The package ships the understudy binary, the pinned Consul and Syncthing
 it runs, and their systemd units, enabled by understudy cluster start or
 cluster join, not by the package.
CONTROL
chmod 0644 "$d/DEBIAN/control" "$d/DEBIAN/conffiles" "$d/DEBIAN/md5sums"

mkdir -p "$out"
deb=$out/understudy_${debversion}_amd64.deb
dpkg-deb --root-owner-group -Zxz -z6 --build "$d" "$deb" >/dev/null
echo "$deb"
