"""Shared payload engines: one table-driven implementation per frame family."""
