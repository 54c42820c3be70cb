"""The device registry (SQLite, audited), its in-memory view for the service, and the `urbansense device` commands."""
