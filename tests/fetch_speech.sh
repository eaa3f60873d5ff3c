#!/usr/bin/env bash
# Fetch Debian's Asterisk core sounds (en, it, ru; WAV and the transcript docs) into $1, without
# installing them: apt-get download + dpkg-deb -x. CC-BY-SA-3.0 (see the packages' copyright files).
set -euo pipefail
dest=${1:?destination folder}
mkdir -p "$dest"
dest=$(cd "$dest" && pwd)  # absolute: the work below happens in a temporary folder
pkgs="asterisk-core-sounds-en-wav asterisk-core-sounds-it-wav asterisk-core-sounds-ru-wav
      asterisk-core-sounds-en asterisk-core-sounds-it asterisk-core-sounds-ru"
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
cd "$work"
if ! apt-get download $pkgs >/dev/null 2>&1; then
  # A fresh machine may have no package lists yet; root can fetch them.
  if [ "$(id -u)" = 0 ]; then apt-get update -qq >/dev/null; fi
  apt-get download $pkgs >/dev/null
fi
mkdir -p "$dest"
for deb in *.deb; do dpkg-deb -x "$deb" "$dest"; done
touch "$dest/.complete"
