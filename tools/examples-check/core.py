"""Validates Kubernetes core kinds with kubernetes-validate, strictly (an unknown field is
an error), on every Kubernetes release from 1.30 to 1.37. Reads [{"where", "doc"}] as JSON
on stdin; prints one line per failure and exits 1 if any."""
import json
import sys

import kubernetes_validate

VERSIONS = [f"1.{minor}.0" for minor in range(30, 38)]

failed = 0
for item in json.load(sys.stdin):
    for version in VERSIONS:
        try:
            kubernetes_validate.validate(item["doc"], version, strict=True)
        except kubernetes_validate.ValidationError as error:
            path = "/".join(str(p) for p in error.path)
            print(f"{item['where']}: Kubernetes {version}: /{path}: {error.message}")
            failed += 1
            break
        except kubernetes_validate.SchemaNotFoundError:
            print(f"{item['where']}: Kubernetes {version} has no schema for {item['doc'].get('kind')}")
            failed += 1
            break
sys.exit(1 if failed else 0)
