"""The bureau's figures: online rate, data accuracy, alerts and cases, per district and kind.

`urbansense report` prints and exports them; the Grafana "figures" dashboard runs the very same
InfluxQL (`report.queries`), so both show the same numbers for the same range.
"""
