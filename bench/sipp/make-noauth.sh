#!/usr/bin/env bash
# Writes the no-auth variant of every scenario: NAME-noauth.xml is NAME.xml
# without its "Authorization: Bearer [field2]" lines, for systems that do
# not authenticate (Kamailio, presence-node --insecure-no-auth). Run it after
# editing a scenario; the loadkit_sipp test fails when a variant is stale.
set -euo pipefail
cd "$(dirname "$0")"
for src in register.xml publish.xml publish-cycle.xml subscribe-cycle.xml subscribe-hold.xml watcher.xml; do
  dst=${src%.xml}-noauth.xml
  {
    # The XML declaration must stay the first line.
    head -n 2 "$src"
    echo "<!-- Generated from $src by make-noauth.sh: the same scenario without Authorization headers. -->"
    tail -n +3 "$src" | grep -v '^ *Authorization: Bearer \[field2\]$'
  } >"$dst"
done
