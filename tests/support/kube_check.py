"""Independent checks of weft's Kubernetes output, with libraries that are
not weft's: `schemas` validates objects against CRD openAPIV3Schemas with
jsonschema (the Kubernetes extensions translated: nullable, int-or-string,
preserve-unknown-fields; unknown fields refused, as kubectl's strict field
validation does); `patch` applies an AdmissionReview's JSONPatch with
jsonpatch (RFC 6902)."""
import base64
import json
import sys

import jsonpatch
import jsonschema


def translate(s):
    """A Kubernetes structural schema as plain JSON Schema."""
    if not isinstance(s, dict):
        return s
    if s.get("x-kubernetes-preserve-unknown-fields") and "properties" not in s:
        return {}
    if s.get("x-kubernetes-int-or-string"):
        return {"type": ["integer", "string"]}
    out = {}
    for k, v in s.items():
        if k == "properties":
            out[k] = {name: translate(sub) for name, sub in v.items()}
        elif k in ("items", "additionalProperties"):
            out[k] = translate(v)
        elif k.startswith("x-kubernetes-") or k in ("nullable", "description"):
            continue
        else:
            out[k] = v
    if "properties" in s and not s.get("x-kubernetes-preserve-unknown-fields"):
        out["additionalProperties"] = False
    if s.get("nullable") and "type" in out:
        out["type"] = [out["type"], "null"]
    return out


def schemas(path):
    bundle = json.load(open(path))
    results = []
    for case in bundle:
        validator = jsonschema.Draft7Validator(translate(case["schema"]))
        errors = sorted(validator.iter_errors(case["object"]), key=lambda e: list(e.path))
        results.append({
            "name": case["name"],
            "valid": not errors,
            "errors": ["/".join(str(p) for p in e.path) + ": " + e.message for e in errors[:3]],
        })
    json.dump(results, sys.stdout)


def patch(pod_path, review_path):
    pod = json.load(open(pod_path))
    review = json.load(open(review_path))
    response = review["response"]
    assert response["allowed"] is True, response
    if "patch" in response:
        assert response["patchType"] == "JSONPatch", response
        ops = json.loads(base64.b64decode(response["patch"]))
        pod = jsonpatch.JsonPatch(ops).apply(pod)
    json.dump(pod, sys.stdout)


if __name__ == "__main__":
    {"schemas": schemas, "patch": patch}[sys.argv[1]](*sys.argv[2:])
