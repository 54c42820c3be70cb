"""The ground floor: vocabulary every other package may import; it imports nothing of ours."""
