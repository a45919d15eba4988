"""cloud.alerting: the cloud's clinical alerting: evaluation of every edge's vitals, incidents merged with the
edges' own alarms, on-call schedules, escalation, notifications and personal anomaly advisories.

docs/alerting.md describes it; `telemed-cloud alerting` runs it (service.py).
"""
