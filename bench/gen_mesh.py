#!/usr/bin/env python3
"""Writes a synthetic mesh configuration of about N resources into DIR, in
the shape real meshes have: per service a Service, a Deployment, a
VirtualService with a header override and a weighted split, and a
DestinationRule with subsets; plus namespace-wide security policies.

usage: gen_mesh.py DIR N"""
import os
import sys

out, total = sys.argv[1], int(sys.argv[2])
os.makedirs(out, exist_ok=True)
services = max(1, total // 4)
namespaces = max(1, services // 25)
written = 0
for n in range(namespaces):
    ns = f"team-{n}"
    docs = [
        f"apiVersion: security.istio.io/v1\nkind: PeerAuthentication\nmetadata: {{name: default, namespace: {ns}}}\nspec: {{mtls: {{mode: STRICT}}}}\n",
    ]
    for s in range(n, services, namespaces):
        name = f"svc-{s}"
        docs.append(f"""apiVersion: v1
kind: Service
metadata: {{name: {name}, namespace: {ns}}}
spec:
  selector: {{app: {name}}}
  ports: [{{name: http, port: 8080}}]
""")
        docs.append(f"""apiVersion: apps/v1
kind: Deployment
metadata: {{name: {name}, namespace: {ns}}}
spec:
  selector: {{matchLabels: {{app: {name}}}}}
  template:
    metadata: {{labels: {{app: {name}, version: v1}}}}
    spec: {{serviceAccountName: {name}, containers: [{{name: app, image: app:1}}]}}
""")
        docs.append(f"""apiVersion: networking.istio.io/v1
kind: VirtualService
metadata: {{name: {name}, namespace: {ns}}}
spec:
  hosts: [{name}]
  http:
  - match: [{{headers: {{x-canary: {{exact: "true"}}}}}}, {{uri: {{regex: "/api/v[0-9]+/{name}/.*"}}}}]
    route: [{{destination: {{host: {name}, subset: v1}}}}]
  - route:
    - {{destination: {{host: {name}, subset: v1}}, weight: 90}}
    - {{destination: {{host: {name}, subset: v1}}, weight: 10}}
    retries: {{attempts: 3, perTryTimeout: 2s, retryOn: "5xx,connect-failure"}}
    timeout: 10s
""")
        docs.append(f"""apiVersion: networking.istio.io/v1
kind: DestinationRule
metadata: {{name: {name}, namespace: {ns}}}
spec:
  host: {name}
  trafficPolicy:
    connectionPool: {{tcp: {{maxConnections: 100}}, http: {{http1MaxPendingRequests: 10}}}}
    outlierDetection: {{consecutive5xxErrors: 5, interval: 10s, baseEjectionTime: 30s}}
  subsets: [{{name: v1, labels: {{version: v1}}}}]
""")
    written += len(docs)
    with open(os.path.join(out, f"{ns}.yaml"), "w") as f:
        f.write("---\n".join(docs))
print(written)
