"""Validates every Istio manifest under manifests/istio/ against the Istio CRD
schemas (a developer check; CI runs the Rust rules in tests/e2e/tests/manifests.rs).

Usage: python3 manifests/istio/check_schema.py [CRD_DIR]
(default CRD_DIR: /work/shared/istio-crds). Needs PyYAML and jsonschema.
Each document's spec is checked against the openAPIV3Schema of its
apiVersion in the matching CRD. Unknown fields are refused unless the schema
sets x-kubernetes-preserve-unknown-fields, which is what the API server
does. The wasmplugin's pluginConfig is also validated with the filter's
own rules when the canary-router unit tests run.
"""
import glob
import os
import sys

import jsonschema
import yaml

HERE = os.path.dirname(os.path.abspath(__file__))
CRD_DIR = sys.argv[1] if len(sys.argv) > 1 else "/work/shared/istio-crds"


def strict(schema):
    """Adds additionalProperties: false where Kubernetes would prune or refuse."""
    if isinstance(schema, dict):
        if schema.get("type") == "object" and "properties" in schema \
                and not schema.get("x-kubernetes-preserve-unknown-fields") \
                and "additionalProperties" not in schema:
            schema = dict(schema, additionalProperties=False)
        return {k: strict(v) for k, v in schema.items()}
    if isinstance(schema, list):
        return [strict(v) for v in schema]
    return schema


schemas = {}
for path in glob.glob(os.path.join(CRD_DIR, "*.yaml")):
    crd = yaml.safe_load(open(path))
    group, kind = crd["spec"]["group"], crd["spec"]["names"]["kind"]
    for version in crd["spec"]["versions"]:
        schemas[(f"{group}/{version['name']}", kind)] = strict(
            version["schema"]["openAPIV3Schema"]["properties"]["spec"])

failed = 0
skipped = 0
for path in sorted(glob.glob(os.path.join(HERE, "**", "*.yaml"), recursive=True)):
    for doc in yaml.safe_load_all(open(path)):
        if not isinstance(doc, dict) or "apiVersion" not in doc or "spec" not in doc:
            continue  # not a Kubernetes resource (e.g. a ProxyConfig snippet)
        key = (doc["apiVersion"], doc["kind"])
        name = f"{os.path.basename(path)}: {doc['kind']} {doc['metadata']['name']}"
        if key not in schemas:
            # Kubernetes' own kinds (Deployment) have no CRD, and CRD_DIR
            # may lack an Istio kind (ServiceEntry here): say so, do not
            # pretend it was checked. tests/e2e/tests/manifests.rs checks
            # the fields the filters depend on.
            print(f"skip {name}: no CRD schema for {key} in {CRD_DIR}")
            skipped += 1
            continue
        errors = list(jsonschema.Draft7Validator(schemas[key]).iter_errors(doc["spec"]))
        for error in errors:
            print(f"FAIL {name}: spec/{'/'.join(map(str, error.absolute_path))}: {error.message}")
        failed += bool(errors)
        if not errors:
            print(f"ok   {name} against {key[0]}")
print(f"{failed} failed, {skipped} skipped (no schema)")
sys.exit(1 if failed else 0)
