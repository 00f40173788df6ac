"""Pods the size real ones are: ``managedFields`` and a spec like a Deployment's.

A pod as the API server stores it is mostly metadata nobody reads: field ownership
(``managedFields``, written by every controller and the kubelet), a few containers with
environment, probes, volume mounts and resources, and the default tolerations. These
helpers build such a pod of about 7 KB of JSON, so tests and benchmarks of memory and
list sizes measure what a cluster sends, not a 500-byte stand-in.
"""

from __future__ import annotations

from typing import Any

JSON = dict[str, Any]


def managed_fields(time: str) -> list[JSON]:
    """Field ownership of a Deployment pod: the controller, the scheduler and the kubelet."""
    spec_fields = {
        "f:containers": {
            f'k:{{"name":"{name}"}}': {
                ".": {},
                "f:env": {f'k:{{"name":"VAR_{i}"}}': {".": {}, "f:name": {}, "f:value": {}} for i in range(4)},
                "f:image": {},
                "f:imagePullPolicy": {},
                "f:name": {},
                "f:ports": {
                    'k:{"containerPort":8080,"protocol":"TCP"}': {
                        ".": {},
                        "f:containerPort": {},
                        "f:name": {},
                        "f:protocol": {},
                    }
                },
                "f:readinessProbe": {
                    ".": {},
                    "f:failureThreshold": {},
                    "f:httpGet": {".": {}, "f:path": {}, "f:port": {}, "f:scheme": {}},
                    "f:periodSeconds": {},
                    "f:successThreshold": {},
                    "f:timeoutSeconds": {},
                },
                "f:resources": {
                    ".": {},
                    "f:limits": {".": {}, "f:cpu": {}, "f:memory": {}},
                    "f:requests": {".": {}, "f:cpu": {}, "f:memory": {}},
                },
                "f:terminationMessagePath": {},
                "f:terminationMessagePolicy": {},
                "f:volumeMounts": {'k:{"mountPath":"/etc/app"}': {".": {}, "f:mountPath": {}, "f:name": {}}},
            }
            for name in ("app", "sidecar")
        },
        "f:dnsPolicy": {},
        "f:enableServiceLinks": {},
        "f:restartPolicy": {},
        "f:schedulerName": {},
        "f:securityContext": {},
        "f:terminationGracePeriodSeconds": {},
        "f:volumes": {
            'k:{"name":"config"}': {".": {}, "f:configMap": {".": {}, "f:defaultMode": {}, "f:name": {}}, "f:name": {}}
        },
    }
    status_fields = {
        "f:conditions": {
            f'k:{{"type":"{kind}"}}': {
                ".": {},
                "f:lastProbeTime": {},
                "f:lastTransitionTime": {},
                "f:status": {},
                "f:type": {},
            }
            for kind in ("ContainersReady", "Initialized", "PodReadyToStartContainers", "PodScheduled", "Ready")
        },
        "f:containerStatuses": {},
        "f:hostIP": {},
        "f:hostIPs": {},
        "f:phase": {},
        "f:podIP": {},
        "f:podIPs": {},
        "f:startTime": {},
    }
    return [
        {
            "manager": "kube-controller-manager",
            "operation": "Update",
            "apiVersion": "v1",
            "time": time,
            "fieldsType": "FieldsV1",
            "fieldsV1": {
                "f:metadata": {
                    "f:generateName": {},
                    "f:labels": {".": {}, "f:app": {}, "f:pod-template-hash": {}},
                    "f:ownerReferences": {".": {}, 'k:{"uid":"rs"}': {}},
                },
                "f:spec": spec_fields,
            },
        },
        {
            "manager": "kubelet",
            "operation": "Update",
            "apiVersion": "v1",
            "time": time,
            "fieldsType": "FieldsV1",
            "fieldsV1": {"f:status": status_fields},
            "subresource": "status",
        },
    ]


def realistic_spec(node: str | None) -> JSON:
    containers = [
        {
            "name": name,
            "image": f"registry.example/team/{name}:1.2.3",
            "env": [{"name": f"VAR_{i}", "value": f"value-of-environment-variable-{i}"} for i in range(4)],
            "ports": [{"name": "http", "containerPort": 8080, "protocol": "TCP"}],
            "readinessProbe": {
                "httpGet": {"path": "/healthz", "port": 8080, "scheme": "HTTP"},
                "periodSeconds": 10,
                "timeoutSeconds": 1,
                "successThreshold": 1,
                "failureThreshold": 3,
            },
            "resources": {"limits": {"cpu": "500m", "memory": "256Mi"}, "requests": {"cpu": "100m", "memory": "128Mi"}},
            "volumeMounts": [
                {"name": "config", "mountPath": "/etc/app"},
                {
                    "name": "kube-api-access",
                    "mountPath": "/var/run/secrets/kubernetes.io/serviceaccount",
                    "readOnly": True,
                },
            ],
        }
        for name in ("app", "sidecar")
    ]
    spec: JSON = {
        "containers": containers,
        "volumes": [
            {"name": "config", "configMap": {"name": "app-config", "defaultMode": 420}},
            {
                "name": "kube-api-access",
                "projected": {
                    "defaultMode": 420,
                    "sources": [
                        {"serviceAccountToken": {"expirationSeconds": 3607, "path": "token"}},
                        {"configMap": {"name": "kube-root-ca.crt", "items": [{"key": "ca.crt", "path": "ca.crt"}]}},
                        {
                            "downwardAPI": {
                                "items": [
                                    {
                                        "path": "namespace",
                                        "fieldRef": {"apiVersion": "v1", "fieldPath": "metadata.namespace"},
                                    }
                                ]
                            }
                        },
                    ],
                },
            },
        ],
        "tolerations": [
            {
                "key": "node.kubernetes.io/not-ready",
                "operator": "Exists",
                "effect": "NoExecute",
                "tolerationSeconds": 300,
            },
            {
                "key": "node.kubernetes.io/unreachable",
                "operator": "Exists",
                "effect": "NoExecute",
                "tolerationSeconds": 300,
            },
        ],
        "serviceAccountName": "default",
    }
    if node is not None:
        spec["nodeName"] = node
    return spec
