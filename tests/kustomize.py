"""A small kustomize for the tests: renders deploy/k8s overlays offline, without the kustomize or kubectl binary.

It implements only the subset deploy/k8s uses, the way kustomize v5 does it, and refuses anything else (an
unknown kustomization field, a generator, a patch directive) with :class:`Unsupported` rather than ignoring it:

- ``resources``: YAML files (several documents each) and directories holding a kustomization;
- ``components`` (``kind: Component``): applied to the resources gathered so far, before the transformers;
- ``patches``: from ``path`` or inline ``patch``, optionally with a ``target`` (kind, name, namespace); a patch
  that is a mapping is a strategic merge patch (lists merged by the Kubernetes merge keys below, other lists
  replaced), a patch that is a list is a JSON 6902 patch (``add``, ``replace``, ``remove``);
- ``namespace``: set on every namespaced object;
- ``labels`` with ``includeSelectors: false``: added to every object's labels, and to pod templates' labels when
  ``includeTemplates`` is true;
- ``images``: ``newName``, ``newTag`` and ``digest`` for containers and init containers of pod templates.

Transformers run in kustomize's order: patches, namespace, labels, images. Generated names (hash suffixes) are not
needed because no generator is used. A real ``kustomize build`` of the same directory should give the same objects;
this module is what lets the tests check them where no binary exists.
"""

from __future__ import annotations

import copy
from pathlib import Path
from typing import Any

import yaml

__all__ = ["Unsupported", "render"]

Object = dict[str, Any]
#: libyaml's safe loader (PyYAML's wheels have it): the documents of yaml.safe_load_all, several times faster.
SAFE_LOADER: type[yaml.SafeLoader] = getattr(yaml, "CSafeLoader", yaml.SafeLoader)

KUSTOMIZATION_FIELDS = {"apiVersion", "kind", "resources", "components", "patches", "namespace", "labels", "images"}
CLUSTER_SCOPED = {"Namespace", "ClusterRole", "ClusterRoleBinding", "CustomResourceDefinition", "PersistentVolume",
                  "StorageClass", "PriorityClass", "IngressClass", "ValidatingWebhookConfiguration",
                  "MutatingWebhookConfiguration"}
WORKLOADS = {"Deployment", "StatefulSet", "DaemonSet", "ReplicaSet", "Job"}
#: Lists merged item by item in a strategic merge patch, by the field named here (Kubernetes' patchMergeKey).
MERGE_KEYS = {"containers": "name", "initContainers": "name", "env": "name", "volumes": "name",
              "volumeMounts": "mountPath", "ports": "containerPort", "imagePullSecrets": "name",
              "topologySpreadConstraints": "topologyKey", "tolerations": "key"}


class Unsupported(ValueError):
    """The kustomization uses something this renderer does not implement."""


def render(directory: Path) -> list[Object]:
    """The objects ``kustomize build directory`` would print."""
    return _build(directory.resolve(), expected_kind="Kustomization", objects=[])


def _load(path: Path) -> list[Object]:
    return [doc for doc in yaml.load_all(path.read_text(), Loader=SAFE_LOADER) if doc]


def _build(directory: Path, *, expected_kind: str, objects: list[Object]) -> list[Object]:
    [kustomization] = _load(directory / "kustomization.yaml")
    unknown = set(kustomization) - KUSTOMIZATION_FIELDS
    if unknown:
        raise Unsupported(f"{directory}: fields {sorted(unknown)} are not implemented by tests/kustomize.py")
    if kustomization.get("kind", "Kustomization") != expected_kind:
        raise Unsupported(f"{directory}: expected a {expected_kind}, got {kustomization.get('kind')}")
    objects = list(objects)
    for entry in kustomization.get("resources", []):
        path = directory / entry
        if path.is_dir():
            objects += _build(path.resolve(), expected_kind="Kustomization", objects=[])
        else:
            objects += _load(path)
    for entry in kustomization.get("components", []):
        objects = _build((directory / entry).resolve(), expected_kind="Component", objects=objects)
    for patch in kustomization.get("patches", []):
        objects = _apply_patch(directory, patch, objects)
    if "namespace" in kustomization:
        for obj in objects:
            if obj["kind"] not in CLUSTER_SCOPED:
                obj["metadata"]["namespace"] = kustomization["namespace"]
    for labels in kustomization.get("labels", []):
        _add_labels(labels, objects)
    for image in kustomization.get("images", []):
        _set_image(image, objects)
    return objects


def _apply_patch(directory: Path, entry: Object, objects: list[Object]) -> list[Object]:
    if set(entry) - {"path", "patch", "target"}:
        raise Unsupported(f"patch fields {sorted(set(entry) - {'path', 'patch', 'target'})}")
    text = (directory / entry["path"]).read_text() if "path" in entry else entry["patch"]
    documents = [doc for doc in yaml.load_all(text, Loader=SAFE_LOADER) if doc]
    target = entry.get("target")
    if target and set(target) - {"kind", "name", "namespace", "group", "version"}:
        raise Unsupported(f"patch target fields {sorted(target)}")
    objects = [copy.deepcopy(obj) for obj in objects]
    for document in documents:
        if isinstance(document, list):
            if not target:
                raise Unsupported("a JSON 6902 patch needs a target")
            matches = [obj for obj in objects if _matches(obj, target)]
        else:
            selector = target or {"kind": document["kind"], "name": document["metadata"]["name"]}
            matches = [obj for obj in objects if _matches(obj, selector)]
        if not matches:
            raise ValueError(f"{directory}: the patch {entry} matches no object")
        for obj in matches:
            if isinstance(document, list):
                _json6902(obj, document)
            else:
                patch = copy.deepcopy(document)
                if target:  # a targeted patch does not rename what it patches
                    patch.pop("metadata", None)
                _merge(obj, patch)
    return objects


def _matches(obj: Object, target: Object) -> bool:
    return all(obj.get("metadata", {}).get(key) == value if key in ("name", "namespace") else
               obj.get("kind") == value if key == "kind" else
               obj.get("apiVersion", "").rpartition("/")[0 if key == "group" else 2] == value
               for key, value in target.items())


def _merge(base: Object, patch: Object) -> None:
    for key, value in patch.items():
        if isinstance(key, str) and key.startswith("$"):
            raise Unsupported(f"strategic merge directive {key}")
        if value is None:
            base.pop(key, None)
        elif isinstance(value, dict) and isinstance(base.get(key), dict):
            _merge(base[key], value)
        elif isinstance(value, list) and key in MERGE_KEYS and isinstance(base.get(key), list):
            _merge_list(base[key], value, MERGE_KEYS[key])
        else:
            base[key] = copy.deepcopy(value)


def _merge_list(base: list[Any], patch: list[Any], key: str) -> None:
    for item in patch:
        if not isinstance(item, dict) or key not in item:
            raise Unsupported(f"list item without its merge key {key}: {item}")
        existing = [old for old in base if isinstance(old, dict) and old.get(key) == item[key]]
        if existing:
            _merge(existing[0], item)
        else:
            base.append(copy.deepcopy(item))


def _json6902(obj: Object, operations: list[Object]) -> None:
    for operation in operations:
        *parents, last = [part.replace("~1", "/").replace("~0", "~") for part in operation["path"].split("/")[1:]]
        node: Any = obj
        for part in parents:
            node = node[int(part)] if isinstance(node, list) else node[part]
        op = operation["op"]
        if isinstance(node, list):
            index = len(node) if last == "-" else int(last)
            if op == "add":
                node.insert(index, copy.deepcopy(operation["value"]))
            elif op == "replace":
                node[index] = copy.deepcopy(operation["value"])
            elif op == "remove":
                del node[index]
            else:
                raise Unsupported(f"JSON patch op {op}")
        elif op in ("add", "replace"):
            if op == "replace" and last not in node:
                raise ValueError(f"replace of missing {operation['path']}")
            node[last] = copy.deepcopy(operation["value"])
        elif op == "remove":
            del node[last]
        else:
            raise Unsupported(f"JSON patch op {op}")


def pod_spec(obj: Object) -> Object | None:
    """The pod template's spec of a workload, or ``None``."""
    if obj["kind"] in WORKLOADS:
        spec: Object = obj["spec"]["template"]["spec"]
        return spec
    if obj["kind"] == "CronJob":
        spec = obj["spec"]["jobTemplate"]["spec"]["template"]["spec"]
        return spec
    return None


def _add_labels(entry: Object, objects: list[Object]) -> None:
    if set(entry) - {"pairs", "includeSelectors", "includeTemplates"}:
        raise Unsupported(f"labels fields {sorted(entry)}")
    if entry.get("includeSelectors", False):
        raise Unsupported("labels with includeSelectors: true (selectors are written out in the manifests)")
    for obj in objects:
        obj["metadata"].setdefault("labels", {}).update(entry["pairs"])
        if entry.get("includeTemplates") and obj["kind"] in WORKLOADS:
            obj["spec"]["template"].setdefault("metadata", {}).setdefault("labels", {}).update(entry["pairs"])


def _set_image(entry: Object, objects: list[Object]) -> None:
    if set(entry) - {"name", "newName", "newTag", "digest"}:
        raise Unsupported(f"images fields {sorted(entry)}")
    for obj in objects:
        spec = pod_spec(obj)
        for container in (spec or {}).get("containers", []) + (spec or {}).get("initContainers", []):
            name, tag, digest = _split_image(container["image"])
            if name != entry["name"]:
                continue
            name = entry.get("newName", name)
            if "digest" in entry:
                container["image"] = f"{name}@{entry['digest']}"
            elif "newTag" in entry:
                container["image"] = f"{name}:{entry['newTag']}"
            else:
                container["image"] = name + (f"@{digest}" if digest else f":{tag}" if tag else "")


def _split_image(image: str) -> tuple[str, str | None, str | None]:
    name, _, digest = image.partition("@")
    slash = name.rfind("/")
    colon = name.rfind(":")
    if colon > slash:
        return name[:colon], name[colon + 1:], digest or None
    return name, None, digest or None
