"""The migration runbook: its steps, the journal, the config switch, the schema step."""
