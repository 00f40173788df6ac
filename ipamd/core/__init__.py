"""Pure domain logic of ipamd: address math, subnet and pool canonicalisation, allocation rules.

Nothing in this package does I/O: it imports only the standard library and netaddr, so it
can be tested exhaustively without a database (an import-linter contract keeps it so).
"""
