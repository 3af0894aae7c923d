#!/bin/bash
# Per-request cost of each proxy of a side-by-side mode: CPU, context switches (wake-ups) and system calls per request,
# and optionally a perf profile, under the side-by-side harness's topology and load (../shared/bench).
#   bench/profile.sh [-m "nginx weft-plain weft ztunnel linkerd"] [-r 1000] [-d 10] [-s] [-p]
#   -s: a second pass under `strace -c -f` (system calls by name, per request; slows the proxy, so a separate pass)
#   -p: a third pass under `perf record -g` of the proxies; reports in $WB/out/perf-MODE.txt (top symbols, children off)
# Run as root from the project root after a release build. SHARED (default ../shared/bench) is the harness to use.
# Figures are per request through the whole mesh (both proxies together), as in issue 18's breakdown: CPU µs from
# /proc/PID/stat, wake-ups = voluntary context switches of every thread of the proxies (/proc/PID/task/*/status).
set -u
SHARED=${SHARED:-$(cd "$(dirname "$0")/../../shared/bench" 2>/dev/null && pwd)}
source "$SHARED/lib.sh"; source "$(dirname "$0")/backend.sh"
WB=${WB:-$HOME/.cache/weft-bench}; export WB; mkdir -p $WB/out
modes="nginx weft-plain weft"; rate=1000; dur=10; do_strace=0; do_perf=0; conns=16
while getopts m:r:d:sp o; do case $o in m) modes=$OPTARG;; r) rate=$OPTARG;; d) dur=$OPTARG;; s) do_strace=1;; p) do_perf=1;; *) exit 2;; esac; done
# The modes of the side-by-side harness, and those of bench/side-by-side-extra-modes.patch (apply it to SHARED to use them):
# weft-old/-old-plain (WEFT_BIN=$OLD_BIN), weft-b/-b-plain (WEFT_BIN=$B_BIN), weft-h2, weft-authz, weft-tracing.
WEFTS='weft|weft-plain|weft-old|weft-old-plain|weft-authz|weft-tracing|weft-h2|weft-b|weft-b-plain'
peer_dir() { if [[ $1 =~ ^($WEFTS)$ ]]; then echo $SHARED/peers/weft; elif [[ $1 == nginx* ]]; then echo $SHARED/peers/nginx; else echo $SHARED/peers/$1; fi; }
peer_env() { case $1 in nginx|weft-plain) echo MODE=plain;; nginx-mtls|weft) echo MODE=mtls;; weft-authz) echo MODE=authz;; weft-tracing) echo MODE=tracing;;
  weft-h2) echo MODE=h2;; weft-old) echo MODE=mtls WEFT_BIN=$OLD_BIN;; weft-old-plain) echo MODE=plain WEFT_BIN=$OLD_BIN;;
  weft-b) echo MODE=mtls WEFT_BIN=$B_BIN;; weft-b-plain) echo MODE=plain WEFT_BIN=$B_BIN;; *) echo X=;; esac; }
pids_of() { if [[ $1 =~ ^($WEFTS)$ ]]; then cat $WB/weft.pids; elif [[ $1 == nginx* ]]; then cat $WB/nginx.pids; else cat $WB/$1.pids; fi 2>/dev/null; }
cleanup() { for m in $modes; do env $(peer_env $m) $(peer_dir $m)/down.sh >/dev/null 2>&1; done; [[ -f $WB/backend.pid ]] && kill $(cat $WB/backend.pid) 2>/dev/null; pods_down; }
trap cleanup EXIT

# Every thread of every process (nginx has workers under its master: include children).
all_pids() { for p in "$@"; do echo $p; pgrep -P $p; done | sort -u; }
cpu_ticks() { local t=0; for p in $(all_pids "$@"); do t=$((t + $(awk '{print $14+$15}' /proc/$p/stat))); done; echo $t; }
vol_cs() { local t=0; for p in $(all_pids "$@"); do for s in /proc/$p/task/*/status; do t=$((t + $(awk '/^voluntary_ctxt_switches/{print $2}' $s))); done; done; echo $t; }
load() { in_pod wb-cli oha -z ${dur}s -q $rate -c $conns --latency-correction --no-tui --output-format json http://10.88.0.20:8080/1k; }
reqs() { python3 -c 'import json,sys; s=json.load(open(sys.argv[1]))["summary"]; print(round(s["requestsPerSec"]*s["total"]))' "$1"; }

backend_up || exit 1
sleep 0.3
tck=$(getconf CLK_TCK)
echo "| mode | requests | CPU µs / request (all proxies) | wake-ups / request | threads |"
echo "|---|---|---|---|---|"
for m in $modes; do
  env $(peer_env $m) $(peer_dir $m)/up.sh >$WB/out/$m.up.log 2>&1 || { echo "| $m | up failed |"; continue; }
  pids=$(pids_of $m)
  in_pod wb-cli oha -z 3s -q $rate -c $conns --no-tui http://10.88.0.20:8080/1k >/dev/null 2>&1   # warm pools
  c0=$(cpu_ticks $pids); v0=$(vol_cs $pids)
  load > $WB/out/profile-$m.json 2>/dev/null
  c1=$(cpu_ticks $pids); v1=$(vol_cs $pids); n=$(reqs $WB/out/profile-$m.json)
  threads=0; for p in $(all_pids $pids); do threads=$((threads + $(ls /proc/$p/task | wc -l))); done
  echo "| $m | $n | $(echo "scale=1; ($c1 - $c0) * 1000000 / $tck / $n" | bc) | $(echo "scale=2; ($v1 - $v0) / $n" | bc) | $threads |"
  if ((do_strace)); then
    args=(); for p in $(all_pids $pids); do args+=(-p $p); done
    strace -c -f -o $WB/out/strace-$m.txt "${args[@]}" & st=$!; sleep 0.5
    load > $WB/out/strace-$m.json 2>/dev/null; kill -INT $st; wait $st 2>/dev/null
    n=$(reqs $WB/out/strace-$m.json)
    awk -v n=$n '/^ *[0-9.]+ +[0-9.]+ +[0-9]+ +[0-9]+/ {printf "    %-16s %6.2f / request\n", $NF, $4/n}' $WB/out/strace-$m.txt | sort -k2 -g -r | head -8
  fi
  if ((do_perf)); then
    perf record -q -F 2999 -g -o $WB/out/perf-$m.data -p $(all_pids $pids | paste -sd,) -- sleep $dur >/dev/null 2>&1 & pr=$!
    load > /dev/null 2>&1; wait $pr
    perf report -q -i $WB/out/perf-$m.data --no-children --percent-limit 0.7 --stdio -g none 2>/dev/null > $WB/out/perf-$m.txt
    echo "    perf: $WB/out/perf-$m.txt"
  fi
  env $(peer_env $m) $(peer_dir $m)/down.sh >/dev/null 2>&1
done
echo; echo "rate $rate rps, ${dur}s, $conns connections, $(nproc) cores, $(date -u +%F)"
