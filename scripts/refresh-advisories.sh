#!/usr/bin/env bash
# Refreshes tools/advisory-db, the snapshot of the RustSec advisory database
# that `cargo deny` checks against offline (scripts/deny.sh), where the
# database can be reached:
#
#   scripts/refresh-advisories.sh                 # from https://github.com/rustsec/advisory-db
#   scripts/refresh-advisories.sh /path/to/clone  # from a local clone (bare or not) or another URL
#
# It keeps the advisories of the crates named in our lock files (the main
# workspace and the fuzz workspaces) and the list of every crate the database
# has advisories for at that commit, which scripts/deny.sh uses to notice a
# crate added to a lock file after the snapshot was pruned. Run it again after
# adding a dependency that scripts/deny.sh names, and at least monthly; then
# review `git diff tools/advisory-db` (new advisories are new files) and
# update the snapshot line in docs/testing.md.
set -euo pipefail
cd "$(dirname "$0")/.."

source=${1:-https://github.com/rustsec/advisory-db}
snapshot=tools/advisory-db
cache=target/advisory-db-src.git
locks=(Cargo.lock protocol/fuzz/Cargo.lock gateway/fuzz/Cargo.lock)

# A local clone as a file:// URL, so --depth applies to it too.
[ -d "$source" ] && source="file://$(cd "$source" && pwd)"
mkdir -p target
if [ -d "$cache" ]; then
  git --git-dir="$cache" fetch --quiet --depth 1 "$source" +main:refs/heads/main
else
  git clone --quiet --bare --depth 1 --branch main "$source" "$cache"
fi
git_db() { git --git-dir="$cache" "$@"; }
commit=$(git_db rev-parse refs/heads/main)
date=$(git_db show -s --format=%cI "$commit")

# Every crate with an advisory at this commit, and the ones we use.
advised=$(git_db ls-tree --name-only "$commit" crates/ | sed 's|^crates/||' | sort -u)
used=$(for l in "${locks[@]}"; do [ -f "$l" ] && sed -n 's/^name = "\(.*\)"$/\1/p' "$l"; done | sort -u)
kept=$(comm -12 <(printf '%s\n' "$advised") <(printf '%s\n' "$used"))

rm -rf "$snapshot/crates"
mkdir -p "$snapshot/crates"
for name in $kept; do
  git_db archive "$commit" "crates/$name" | tar -x -C "$snapshot"
done
printf '%s\n' "$advised" >"$snapshot/advised-crates.txt"
git_db show "$commit:LICENSE.txt" >"$snapshot/LICENSE.txt"
git_db show "$commit:LICENSES/CC0-1.0.txt" >"$snapshot/CC0-1.0.txt"
cat >"$snapshot/SNAPSHOT" <<EOF
# The RustSec advisory database as of this commit, pruned to the crates of
# our lock files (scripts/refresh-advisories.sh writes this file).
url = https://github.com/rustsec/advisory-db
commit = $commit
date = $date
pruned_for = ${locks[*]}
EOF

n_files=$(find "$snapshot/crates" -name '*.md' | wc -l)
printf 'advisory snapshot %s (%s): %d advisories of %d of our crates (of %d crates with advisories)\n' \
  "${commit:0:12}" "$date" "$n_files" "$(printf '%s\n' "$kept" | grep -c .)" "$(printf '%s\n' "$advised" | grep -c .)"
git status --short -- "$snapshot" | head -40
echo "now: scripts/deny.sh, review git diff $snapshot, and update the snapshot line in docs/testing.md"
