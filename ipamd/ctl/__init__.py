"""``ipamctl``: the operator CLI. ``cli`` parses and dispatches, ``client`` speaks HTTP,
``output`` renders, ``manifests`` and ``apply`` handle ``ipamctl apply -f``."""

from ipamd.ctl.cli import main

__all__ = ["main"]
