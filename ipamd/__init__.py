"""ipamd: a cluster-wide IP address manager for Kubernetes secondary networks."""

__version__ = "0.1.0"
