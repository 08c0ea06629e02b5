"""Steps 5-6: our own mail: templates, composing, the outbox and the SMTP sender."""
