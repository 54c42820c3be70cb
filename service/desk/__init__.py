"""The emergency desk console: a web page served by the service (aiohttp), behind a login.

Live over server-sent events: active flood alerts first (depth now, rise rate, ETA, case), a map
of the gauges coloured by state (Leaflet, shipped with the package), a visible and audible cue
for a new critical alert, acknowledge and silence with a comment (audited with the user's name,
sent to the case platform as an update), and the recent notifications with their delivery state.
"""
