"""HTTP layer: the aiohttp app factory, the error middleware, one module per resource.

Handlers parse, call ``ipamd.service.Ipam`` and serialise; they hold no logic of their own.
"""
