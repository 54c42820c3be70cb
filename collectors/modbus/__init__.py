"""Modbus collector: polls Modbus TCP devices and RTU devices behind TCP serial gateways (pymodbus)."""
