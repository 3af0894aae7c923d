"""Prints a weft-proxy `inbound:` section (JSON, which is YAML) with STRICT
mTLS and 50 authorization policies of 5 rules each, all selecting the
benchmark's server: 25 DENY policies that never match the benchmark's
requests, then 25 ALLOW policies of which only the last rule of the last
one matches (principal cluster.local/ns/bench/sa/cli, GET /1k). Every
request is checked against all 250 rules: the allow path's worst case.
Used by the side-by-side benchmark's `weft-authz` row (docs/benchmarks.md)."""
import json

policies = []
for i in range(50):
    deny = i < 25
    rules = []
    for j in range(5):
        rule = {
            "from": [{"principals": [f"cluster.local/ns/{'evil' if deny else 'other'}-{i}/sa/sa-{j}", f"cluster.local/ns/team-{i}-{j}/sa/*"]}],
            "to": [{"methods": ["POST", "DELETE"] if deny else ["GET"], "paths": [f"/admin-{i}-{j}/*", f"/v{j}/private"]}],
        }
        if j % 2:
            rule["when"] = [{"key": "request.headers[x-tenant]", "values": [f"tenant-{i}-{j}"]}]
        rules.append(rule)
    if i == 49:
        rules[4] = {"from": [{"principals": ["cluster.local/ns/bench/sa/cli"]}], "to": [{"methods": ["GET"], "paths": ["/1k", "/static/*"]}]}
    policies.append({"kind": "AuthorizationPolicy", "namespace": "bench", "name": f"policy-{i}", "action": "DENY" if deny else "ALLOW", "rules": rules})
print(json.dumps({"mtls": "STRICT", "authorization": {"policies": policies}}))
