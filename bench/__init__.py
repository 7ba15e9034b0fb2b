"""One-command benchmark of cloudsync against Home Assistant's own MQTT publish.

Run it with ``scripts/bench`` (``--help`` lists the options); README's Benchmark section
explains the phases and holds the latest results.
"""
