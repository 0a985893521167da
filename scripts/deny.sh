#!/usr/bin/env bash
# `cargo deny check` (advisories, licences, bans, sources; policy in
# deny.toml) on the main workspace and the fuzz workspaces, offline, against
# the committed snapshot of the RustSec advisory database (tools/advisory-db;
# scripts/refresh-advisories.sh renews it where GitHub is reachable).
#
#   scripts/deny.sh                 # all checks, every workspace
#   scripts/deny.sh advisories      # one check (advisories, bans, licenses, sources)
#
# cargo-deny reads an advisory database only from a git checkout under
# `db-path` (deny.toml), named after the database's URL, and judges its age by
# the checkout's HEAD: this script rebuilds that checkout from the snapshot,
# dated as the snapshot's upstream commit, so cargo-deny's own limit
# (`maximum-db-staleness`) applies to the snapshot's real age.
set -euo pipefail
cd "$(dirname "$0")/.."

snapshot=tools/advisory-db
locks=(Cargo.lock protocol/fuzz/Cargo.lock gateway/fuzz/Cargo.lock)
# cargo-deny 0.20's directory for https://github.com/rustsec/advisory-db:
# "advisory-db-" and the XxHash64 of the lower-cased URL. If a newer
# cargo-deny names it otherwise, `cargo deny -L debug --offline check
# advisories` prints the name it looks for ("Opening advisory database at").
db=target/advisory-dbs/advisory-db-3157b0e258782691

commit=$(sed -n 's/^commit = //p' "$snapshot/SNAPSHOT")
date=$(sed -n 's/^date = //p' "$snapshot/SNAPSHOT")

# 1. A crate that entered a lock file after the snapshot was pruned would be
#    checked against nothing: every crate of ours the database had advisories
#    for must have them in the snapshot.
used=$(for l in "${locks[@]}"; do sed -n 's/^name = "\(.*\)"$/\1/p' "$l"; done | sort -u)
pruned_away=$(comm -12 <(sort -u "$snapshot/advised-crates.txt") <(printf '%s\n' "$used") |
  while read -r name; do [ -d "$snapshot/crates/$name" ] || echo "$name"; done)
if [ -n "$pruned_away" ]; then
  echo "error: the advisory snapshot was pruned before these crates entered a lock file:" $pruned_away >&2
  echo "       run scripts/refresh-advisories.sh (GitHub, or a local clone of rustsec/advisory-db)" >&2
  exit 1
fi

# 2. The checkout cargo-deny opens, dated as the snapshot.
rm -rf "$db"
mkdir -p "$db"
cp -R "$snapshot/crates" "$db/"
(
  cd "$db"
  export GIT_AUTHOR_NAME=snapshot GIT_AUTHOR_EMAIL=snapshot@localhost GIT_AUTHOR_DATE=$date
  export GIT_COMMITTER_NAME=snapshot GIT_COMMITTER_EMAIL=snapshot@localhost GIT_COMMITTER_DATE=$date
  git init -q
  git add -A
  git commit -q -m "rustsec/advisory-db $commit (pruned)"
  touch -d "$date" .git/HEAD
)
age_days=$((($(date +%s) - $(date -d "$date" +%s)) / 86400))
printf 'advisory snapshot: rustsec/advisory-db %s of %s (%d days old)\n' "${commit:0:12}" "${date%%T*}" "$age_days"
if ((age_days > 30)); then
  echo "warning: the advisory snapshot is more than 30 days old: run scripts/refresh-advisories.sh where GitHub is reachable"
fi

# 3. The checks, each workspace against the same policy. An ignore or skip
#    that matches nothing in the main workspace is stale and fails; the fuzz
#    workspaces' smaller graphs need not use them all. (Licence exceptions
#    name their crate, and libfuzzer-sys's is only for the fuzz workspaces.)
status=0
for manifest in Cargo.toml protocol/fuzz/Cargo.toml gateway/fuzz/Cargo.toml; do
  if [ "$manifest" = Cargo.toml ]; then
    lints=(-D unmatched-skip -D unnecessary-skip -A license-exception-not-encountered)
  else
    lints=(-A advisory-not-detected -A license-not-encountered -A license-exception-not-encountered -A unmatched-skip -A unnecessary-skip)
  fi
  echo "cargo deny: $manifest"
  cargo deny --offline --locked --manifest-path "$manifest" --config deny.toml \
    check --hide-inclusion-graph "${lints[@]}" "$@" || status=1
done
exit $status
