#!/bin/bash
# Instructions per request of weft's proxies (user space, both proxies together), counted by callgrind: on this
# virtual machine, without hardware counters and with CPU time moving by 10-20% between identical runs, the one
# repeatable measure of what a code change costs. Same topology and peer scripts as the side-by-side harness.
#   bench/instructions.sh [-m "weft-plain weft weft-h2"] [-n 2000]
# Each proxy runs under `valgrind --tool=callgrind`, twice: after a warm-up of 300 requests, once for n requests and once
# for 2n (oha, 4 keep-alive connections, no rate limit: callgrind makes the proxy ~50x slower); the difference of the
# totals over n is the cost of a request. Also writes the top functions (inclusive) of each side's longer run.
# Needs: valgrind. OLD_BIN / B_BIN as for bench/profile.sh.
set -u
SHARED=${SHARED:-$(cd "$(dirname "$0")/../../shared/bench" 2>/dev/null && pwd)}
source "$SHARED/lib.sh"; source "$(dirname "$0")/backend.sh"
WB=${WB:-$HOME/.cache/weft-bench}; export WB; mkdir -p $WB/out
modes="weft-plain weft"; n=2000
while getopts m:n: o; do case $o in m) modes=$OPTARG;; n) n=$OPTARG;; *) exit 2;; esac; done
WEFTS='weft|weft-plain|weft-old|weft-old-plain|weft-authz|weft-tracing|weft-h2|weft-b|weft-b-plain'
peer_env() { case $1 in weft-plain) echo MODE=plain;; weft) echo MODE=mtls;; weft-authz) echo MODE=authz;; weft-tracing) echo MODE=tracing;;
  weft-h2) echo MODE=h2;; weft-old) echo MODE=mtls B=${OLD_BIN:?};; weft-old-plain) echo MODE=plain B=${OLD_BIN:?};;
  weft-b) echo MODE=mtls B=${B_BIN:?};; weft-b-plain) echo MODE=plain B=${B_BIN:?};; *) echo "unknown mode $1" >&2; exit 2;; esac; }
cleanup() { pkill -f "callgrind-out-file=$CG/"; env WEFT_BIN=$wrap $SHARED/peers/weft/down.sh >/dev/null 2>&1; [[ -f $WB/backend.pid ]] && kill $(cat $WB/backend.pid) 2>/dev/null; pods_down; }
CG=/tmp/weft-callgrind; wrap=$CG/bin; mkdir -p $wrap; chmod 755 $CG $wrap   # the proxy runs as uid 1337: outside /root
trap cleanup EXIT

backend_up || exit 1
echo "| mode | requests | instructions / request, client proxy | server proxy | both |"
echo "|---|---|---|---|---|"
for m in $modes; do
  env_=$(peer_env $m) || exit 2
  bin=$(env $env_ bash -c 'echo ${B:-$PWD/target/release}')/weft-proxy
  out=$CG/$m; rm -rf $out; mkdir -p $out; chmod 777 $out
  # `run` under callgrind (the proxy runs as uid 1337: its output directory is world-writable); `init` as it is.
  cat > $wrap/weft-proxy <<W
#!/bin/bash
if [[ \$1 == run ]]; then exec valgrind --tool=callgrind --callgrind-out-file=$out/cg.%p -q $bin "\$@"; fi
exec $bin "\$@"
W
  chmod 755 $wrap/weft-proxy
  # up.sh waits 5 s for readiness; a proxy under callgrind may take longer to start: wait here too.
  # Two lifetimes of the pair, one serving n requests and one 2n after the same warm-up: the difference of their
  # totals is n requests' worth, start-up and shutdown cancel out.
  declare -A IR=()
  for pass in 1 2; do
    env $env_ WEFT_BIN=$wrap $SHARED/peers/weft/up.sh >$WB/out/$m.up.log 2>&1
    for i in $(seq 100); do   # up.sh waits 5 s; a proxy under callgrind may take longer to start
      ok=0; for s in cli srv; do in_pod wb-$s curl -sf -o /dev/null http://127.0.0.1:15000/ready && ok=$((ok+1)); done
      [[ $ok == 2 ]] && break; sleep 0.2
    done
    [[ $ok == 2 ]] || { echo "| $m | proxies not ready |"; tail -3 $WB/out/$m.up.log; break; }
    pids=$(pgrep -f "callgrind-out-file=$out/")
    in_pod wb-cli oha -n 300 -c 4 --no-tui http://10.88.0.20:8080/1k >/dev/null 2>&1   # warm pools and caches
    in_pod wb-cli oha -n $((pass * n)) -c 4 --no-tui --output-format json http://10.88.0.20:8080/1k > $out/oha-$pass.json 2>/dev/null
    for p in $pids; do [[ $(tr '\0' ' ' < /proc/$p/cmdline) == *cli.yaml* ]] && echo cli $p || echo srv $p; done > $out/sides-$pass
    # down.sh stops only processes named weft-proxy; these are valgrind's. Callgrind writes its totals at exit.
    kill $pids 2>/dev/null; for i in $(seq 300); do kill -0 $pids 2>/dev/null || break; sleep 0.1; done
    env WEFT_BIN=$wrap $SHARED/peers/weft/down.sh >/dev/null 2>&1
    while read side p; do
      IR[$side-$pass]=$(callgrind_annotate $out/cg.$p 2>/dev/null | awk '/PROGRAM TOTALS/ {gsub(",","",$1); print $1}')
      ((pass == 2)) && callgrind_annotate --inclusive=yes $out/cg.$p 2>/dev/null | grep -E '^ *[0-9,]+ \(' | head -40 > $out/top-$side.txt
    done < $out/sides-$pass
  done
  ok=$(python3 -c 'import json,sys; s=json.load(open(sys.argv[1]))["summary"]; print(s["successRate"])' $out/oha-2.json)
  c=$(( (IR[cli-2] - IR[cli-1]) / n )); s=$(( (IR[srv-2] - IR[srv-1]) / n ))
  echo "| $m | $n (success $ok) | $c | $s | $((c + s)) |"
done
echo; echo "callgrind, $n requests after a warm-up of 300, 4 connections, GET of 1 KiB; tops in /tmp/weft-callgrind/MODE/top-{cli,srv}.txt"
