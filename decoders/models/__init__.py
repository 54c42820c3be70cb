"""One module per device model, each defining `MODEL: ModelInfo`; decoders/registry.py lists them."""
