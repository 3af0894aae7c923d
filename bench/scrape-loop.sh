#!/bin/bash
# Scrapes both weft proxies' /stats/prometheus every second while the benchmark runs
# (the issue asks for p99.9 with a 1 s scrape interval); other modes have nothing on 15000.
while true; do
  for n in wb-cli wb-srv; do ip netns exec $n curl -s -o /dev/null --max-time 1 http://127.0.0.1:15000/stats/prometheus 2>/dev/null; done
  sleep 1
done
