"""Kubernetes mode: pods in, results out, addresses that follow the pod (docs/kubernetes.md).

- ``client``: the only module that imports kubernetes_asyncio; JSON objects and ipamd errors out;
- ``annotations``, ``objects``: pure reading of Kube-OVN annotations and of API objects;
- ``watch``: list-then-watch cache of the node's pods (resume, relist on 410);
- ``policy``: the ``AttachmentPolicy`` the CNI handlers call, and releases on pod events;
- ``events``, ``writeback``: Warning Events and result annotations on pods;
- ``leader``, ``reconciler``: one daemon at a time releases what the pod watch missed;
- ``singlenode``: on SQLite, the cluster-wide claim of the one node whose database serves;
- ``runtime``: assembles it all for ``ipamd serve --kubernetes``.

The release rules themselves are pure: ``ipamd.core.release``.
"""
