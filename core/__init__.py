"""The ground floor: the shared vocabulary every other package speaks; imports nothing of ours."""
