# Sourced by bench/profile.sh and bench/instructions.sh (after ../shared/bench/lib.sh): the side-by-side harness's
# two pods and its backend, nginx serving 1 KiB at wb-srv:8080/1k, exactly as side-by-side.sh sets them up.
backend_up() {
  pods_down; pods_up
  head -c 1024 /dev/urandom | base64 -w0 | head -c 1024 > $WB/1k
  cat > $WB/backend.conf <<C
worker_processes 1; daemon on; user root root; pid $WB/backend.pid; error_log $WB/backend.err warn;
events { worker_connections 4096; }
http { access_log off; server { listen 8080 reuseport; location = /1k { root $WB; } } }
C
  in_pod wb-srv nginx -c $WB/backend.conf -p $WB
}
