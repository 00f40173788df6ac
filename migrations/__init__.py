"""Alembic environment of ipamd (shipped as ``ipamd.migrations``); the only way the schema changes."""
