"""Simulators and the demo kit: fake fleets, publishers and throw-away daemons for demos, tests and benchmarks."""
