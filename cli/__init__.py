"""The top floor: every `urbansense` command; nothing imports this package."""
