"""Validates rendered Kubernetes objects: built-in kinds against the API's
JSON schemas (kubernetes-validate, strict: unknown fields fail), custom
resources (KEDA, External Secrets) by the fields their controllers need."""
import sys

import kubernetes_validate
import yaml

K8S_VERSION = "1.32.0"

# Custom resources: apiVersion -> kind -> required dotted paths.
CUSTOM = {
    ("keda.sh/v1alpha1", "ScaledObject"): ["spec.scaleTargetRef.name", "spec.triggers"],
    ("keda.sh/v1alpha1", "TriggerAuthentication"): ["spec.secretTargetRef"],
    ("external-secrets.io/v1beta1", "ExternalSecret"): ["spec.secretStoreRef.name", "spec.target.name", "spec.data"],
}


def lookup(doc, path):
    for part in path.split("."):
        if not isinstance(doc, dict) or part not in doc:
            return None
        doc = doc[part]
    return doc


def main(path):
    docs = [d for d in yaml.safe_load_all(open(path)) if d]
    failures = []
    kinds = {}
    for doc in docs:
        key = (doc.get("apiVersion"), doc.get("kind"))
        name = f"{key[1]}/{lookup(doc, 'metadata.name')}"
        kinds[key[1]] = kinds.get(key[1], 0) + 1
        if key in CUSTOM:
            missing = [p for p in CUSTOM[key] if lookup(doc, p) in (None, [], {})]
            if missing:
                failures.append(f"{name}: missing {', '.join(missing)}")
            continue
        try:
            kubernetes_validate.validate(doc, K8S_VERSION, strict=True)
        except kubernetes_validate.ValidationError as e:
            failures.append(f"{name}: {e.message} at {'.'.join(str(p) for p in e.path)}")
        except Exception as e:  # unknown kinds and versions end up here
            failures.append(f"{name}: {e}")
    for failure in failures:
        print("invalid:", failure, file=sys.stderr)
    summary = ", ".join(f"{n} {k}" for k, n in sorted(kinds.items()))
    print(f"k8s: {len(docs)} objects ({summary}) {'INVALID' if failures else 'valid'} for Kubernetes {K8S_VERSION}", file=sys.stderr)
    return 1 if failures else 0


if __name__ == "__main__":
    sys.exit(main(sys.argv[1]))
