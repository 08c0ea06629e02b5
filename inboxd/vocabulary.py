"""The desk's words, defined once: ticket statuses, priorities, message kinds, outbox states.

Everything that checks, stores or shows one of these imports it from here.
"""

# A ticket's lifecycle, in order (see inboxd.desk.workflow for the moves between them).
STATUSES = ("new", "open", "pending", "solved", "closed")
# The statuses of a ticket that still waits on the desk or the customer.
OPEN_STATUSES = ("new", "open", "pending")
# From least to most urgent: max() by index is the most urgent.
PRIORITIES = ("low", "normal", "high", "urgent")
DIRECTIONS = ("in", "out")
# What a stored message is: a customer's mail, an agent's reply, our own
# automatic mail, an internal note, or a bounce.
KINDS = ("customer", "agent", "auto", "note", "bounce")
# An outbox row's life: queued, claimed for sending, sent, or given up.
OUTBOX_STATUSES = ("queued", "sending", "sent", "failed")
