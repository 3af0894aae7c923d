#!/usr/bin/env bash
# Times `weft analyze` (release build) on synthetic meshes of 1,000 and
# 10,000 resources and prints a Markdown table row per size.
set -euo pipefail
cd "$(dirname "$0")/.."
cargo build -q --release -p weft-cli
dir=$(mktemp -d)
trap 'rm -rf "$dir"' EXIT
echo "| resources | files | wall time (best of 5) | peak RSS |"
echo "|---:|---:|---:|---:|"
for n in 1000 10000; do
  count=$(python3 bench/gen_mesh.py "$dir/$n" "$n")
  files=$(ls "$dir/$n" | wc -l)
  ./target/release/weft analyze -f "$dir/$n" >/dev/null   # warm the page cache, and it must be clean
  best=""
  for _ in 1 2 3 4 5; do
    t0=$(date +%s%N)
    ./target/release/weft analyze -f "$dir/$n" >/dev/null
    t=$(( ($(date +%s%N) - t0) / 1000 ))
    if [ -z "$best" ] || [ "$t" -lt "$best" ]; then best=$t; fi
  done
  rss=$( { /usr/bin/time -f %M ./target/release/weft analyze -f "$dir/$n" >/dev/null; } 2>&1 )
  printf '| %s | %s | %d.%03d ms | %d MiB |\n' "$count" "$files" $((best / 1000)) $((best % 1000)) $((rss / 1024))
done
