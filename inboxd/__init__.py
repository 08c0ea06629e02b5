"""inboxd: a shared-inbox helpdesk that lives inside your IMAP mailboxes."""

__version__ = "0.1.0"
