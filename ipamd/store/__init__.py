"""Storage: SQLAlchemy tables, engine set-up for SQLite and PostgreSQL, and the queries.

This layer may do database I/O and nothing else; SQLAlchemy exceptions stop here and
leave as ``ipamd.errors`` types.
"""
