"""Test support: a throwaway PostgreSQL, daemon processes, a Unix-socket HTTP client."""
