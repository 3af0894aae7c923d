#!/bin/bash
# Throughput of one proxy on one core: the proxy pinned to CPU 0, the load generator (oha, no rate limit, 64
# keep-alive connections) and the backend (nginx, 16-byte answers) pinned to CPU 1, all in one network namespace,
# the proxy as an explicit HTTP/1.1 listener in front of the backend. nginx as the proxy (one worker, upstream
# keep-alive) is the reference row. Issue 18's goal: at least 40,000 requests per second for weft.
#   bench/one-core.sh [-d 10] [-k 3]        (as root, after a release build; WEFT_BIN as for the side-by-side harness)
set -u
dur=10; rounds=3
while getopts d:k: o; do case $o in d) dur=$OPTARG;; k) rounds=$OPTARG;; *) exit 2;; esac; done
P=${WEFT_BIN:-$PWD/target/release}/weft-proxy; [[ -x $P ]] || { echo "no $P"; exit 1; }
ns=w1core; d=/tmp/weft-one-core; rm -rf $d; mkdir -p $d
cleanup() { for p in $(ip netns pids $ns 2>/dev/null); do kill $p 2>/dev/null; done; sleep 0.3; ip netns del $ns 2>/dev/null; }
trap cleanup EXIT
cleanup; ip netns add $ns; ip -n $ns link set lo up
printf 'sixteen bytes..\n' > $d/16
cat > $d/backend.conf <<C
worker_processes 1; daemon on; pid $d/backend.pid; error_log $d/backend.err warn;
events { worker_connections 4096; }
http { access_log off; server { listen 127.0.0.1:8080; location = /16 { root $d; } } }
C
cat > $d/proxy.conf <<C
worker_processes 1; daemon on; pid $d/proxy.pid; error_log $d/proxy.err warn;
events { worker_connections 4096; }
http { access_log off; upstream b { server 127.0.0.1:8080; keepalive 128; }
  server { listen 127.0.0.1:18081; location / { proxy_pass http://b; proxy_http_version 1.1; proxy_set_header Connection ""; } } }
C
printf 'listeners:\n- {name: app, kind: explicit, address: "127.0.0.1:18080", cluster: app}\nclusters:\n- {name: app, endpoints: ["127.0.0.1:8080"]}\n' > $d/weft.yaml
ip netns exec $ns taskset -c 1 nginx -c $d/backend.conf -p $d
ip netns exec $ns taskset -c 0 nginx -c $d/proxy.conf -p $d
ip netns exec $ns taskset -c 0 $P run --config $d/weft.yaml --log warn >$d/weft.log 2>&1 &
for i in $(seq 50); do ip netns exec $ns curl -sf -o /dev/null http://127.0.0.1:18080/16 && break; sleep 0.1; done
declare -A RPS P50 P99
for ((k=1; k<=rounds; k++)); do
  for row in direct nginx weft; do
    case $row in direct) port=8080;; nginx) port=18081;; weft) port=18080;; esac
    ip netns exec $ns taskset -c 1 oha -z ${dur}s -c 64 --no-tui --output-format json http://127.0.0.1:$port/16 > $d/$row-$k.json 2>/dev/null
    read rps p50 p99 ok < <(python3 -c 'import json,sys; j=json.load(open(sys.argv[1])); s=j["summary"]; l=j["latencyPercentiles"]; print(round(s["requestsPerSec"]), round(l["p50"]*1000,3), round(l["p99"]*1000,3), s["successRate"])' $d/$row-$k.json)
    RPS[$row]+="$rps "; P50[$row]+="$p50 "; P99[$row]+="$p99 "
  done
done
med() { tr ' ' '\n' | grep -v '^$' | sort -g | awk '{a[NR]=$1} END{print (NR%2 ? a[(NR+1)/2] : (a[NR/2]+a[NR/2+1])/2)}'; }
echo "| path | req/s (median of $rounds) | runs | p50 ms | p99 ms |"
echo "|---|---|---|---|---|"
for row in direct nginx weft; do
  echo "| $row | $(med <<<"${RPS[$row]}") | ${RPS[$row]% } | $(med <<<"${P50[$row]}") | $(med <<<"${P99[$row]}") |"
done
echo; echo "proxy on CPU 0; oha (64 connections) and the nginx backend on CPU 1; ${dur}s per run; $(date -u +%F)"
