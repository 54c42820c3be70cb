"""JavaScript (TS013) codecs for the long tail: <model>.js plus <model>.toml, loaded by decoders/registry.py."""
