"""Preset rule files (TOML) shipped with urbansense; loaded unless disabled."""
