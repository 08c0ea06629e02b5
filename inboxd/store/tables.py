"""The store's tables as SQLAlchemy Core: GENERATED from inboxd/store/models.py, do not edit.

Regenerate with `scripts/gen_tables` after changing a model (tests/test_tables_generated.py
fails while this file differs from a fresh generation).  The runtime (inboxd.store.sql's
`tables` and `t`, create_all for a fresh store, backups and copies) uses these tables, so the
daemon never imports SQLModel or pydantic; the models remain the declaration that Alembic's
migrations are checked against.
"""

from __future__ import annotations

import sqlalchemy as sa

from inboxd.store.indexes import Index
from inboxd.store.types import IMAP_NUMBER, UTCDateTime

metadata = sa.MetaData()

ticket = sa.Table(
    'ticket',
    metadata,
    sa.Column('id', sa.Integer(), primary_key=True, nullable=False),
    sa.Column('ref', sa.String(), nullable=False, index=True, unique=True),
    sa.Column('subject', sa.String(), nullable=False, default=''),
    sa.Column('status', sa.String(), nullable=False, default='new', index=True),
    sa.Column('priority', sa.String(), nullable=False, default='normal'),
    sa.Column('mailbox', sa.String(), nullable=False, index=True),
    sa.Column('requester', sa.String(), nullable=False, index=True),
    sa.Column('requester_name', sa.String(), nullable=False, default=''),
    sa.Column('assignee', sa.String(), nullable=True, index=True),
    sa.Column('tags', sa.String(), nullable=False, default='[]'),
    sa.Column('message_count', sa.Integer(), nullable=False, default=0),
    sa.Column('created_at', UTCDateTime(), nullable=False),
    sa.Column('updated_at', UTCDateTime(), nullable=False, index=True),
    sa.Column('first_response_at', UTCDateTime(), nullable=True),
    sa.Column('version', sa.Integer(), nullable=False, default=1),
    sa.Column('closed_at', UTCDateTime(), nullable=True),
    sa.Column('solved_at', UTCDateTime(), nullable=True),
    sa.Column('team', sa.String(), nullable=True, index=True),
    sa.Column('tier', sa.Integer(), nullable=False, default=1, server_default='1'),
    sa.Column('escalated', sa.Boolean(), nullable=False, default=False, server_default=sa.false()),
    sa.Column('approved_by', sa.String(), nullable=True),
    sa.Column('merged_into', sa.Integer(), sa.ForeignKey('ticket.id'), nullable=True),
    sa.Column('sla_policy', sa.String(), nullable=True),
    sa.Column('first_response_due', UTCDateTime(), nullable=True, index=True),
    sa.Column('next_response_due', UTCDateTime(), nullable=True, index=True),
    sa.Column('resolution_due', UTCDateTime(), nullable=True, index=True),
    sa.Column('sla_version', sa.Integer(), nullable=False, default=0, server_default='0'),
    sa.Column('history', sa.Boolean(), nullable=False, default=False, server_default=sa.false()),
    sa.Column('escalated_at', UTCDateTime(), nullable=True),
    sa.Column('tier_response_due', UTCDateTime(), nullable=True, index=True),
)

customer = sa.Table(
    'customer',
    metadata,
    sa.Column('id', sa.Integer(), primary_key=True, nullable=False),
    sa.Column('email', sa.String(), nullable=False, index=True, unique=True),
    sa.Column('name', sa.String(), nullable=False, default=''),
    sa.Column('created_at', UTCDateTime(), nullable=False),
    sa.Column('bouncing', sa.Boolean(), nullable=False, default=False, server_default=sa.false()),
    sa.Column('bounced_at', UTCDateTime(), nullable=True),
)

rawmessage = sa.Table(
    'rawmessage',
    metadata,
    sa.Column('sha256', sa.String(), primary_key=True, nullable=False),
    sa.Column('size', sa.Integer(), nullable=False),
    sa.Column('data', sa.LargeBinary(), nullable=False),
)

message = sa.Table(
    'message',
    metadata,
    sa.Column('id', sa.Integer(), primary_key=True, nullable=False),
    sa.Column('message_key', sa.String(), nullable=False, index=True, unique=True),
    sa.Column('message_id', sa.String(), nullable=True, index=True),
    sa.Column('ticket_id', sa.Integer(), sa.ForeignKey('ticket.id'), nullable=False, index=True),
    sa.Column('direction', sa.String(), nullable=False, default='in'),
    sa.Column('kind', sa.String(), nullable=False, default='customer'),
    sa.Column('from_addr', sa.String(), nullable=False, default=''),
    sa.Column('from_name', sa.String(), nullable=False, default=''),
    sa.Column('to_addrs', sa.String(), nullable=False, default='[]'),
    sa.Column('cc_addrs', sa.String(), nullable=False, default='[]'),
    sa.Column('reply_to', sa.String(), nullable=False, default='[]'),
    sa.Column('date', UTCDateTime(), nullable=True),
    sa.Column('subject', sa.String(), nullable=False, default=''),
    sa.Column('text', sa.String(), nullable=False, default=''),
    sa.Column('reply_text', sa.String(), nullable=False, default=''),
    sa.Column('html_only', sa.Boolean(), nullable=False, default=False),
    sa.Column('in_reply_to', sa.String(), nullable=False, default='[]'),
    sa.Column('references', sa.String(), nullable=False, default='[]'),
    sa.Column('auto', sa.String(), nullable=False, default='{}'),
    sa.Column('raw_sha256', sa.String(), sa.ForeignKey('rawmessage.sha256'), nullable=False),
    sa.Column('size', sa.Integer(), nullable=False, default=0),
    sa.Column('created_at', UTCDateTime(), nullable=False),
    Index('ix_message_agent', 'ticket_id', sqlite_where=sa.text("kind = 'agent'"), postgresql={'where': sa.text("kind = 'agent'")}),
)

messageref = sa.Table(
    'messageref',
    metadata,
    sa.Column('message_pk', sa.Integer(), sa.ForeignKey('message.id'), primary_key=True, nullable=False),
    sa.Column('ref', sa.String(), primary_key=True, nullable=False, index=True),
)

sighting = sa.Table(
    'sighting',
    metadata,
    sa.Column('id', sa.Integer(), primary_key=True, nullable=False),
    sa.Column('message_pk', sa.Integer(), sa.ForeignKey('message.id'), nullable=False, index=True),
    sa.Column('mailbox', sa.String(), nullable=False),
    sa.Column('folder', sa.String(), nullable=False),
    sa.Column('uidvalidity', IMAP_NUMBER, nullable=False),
    sa.Column('uid', IMAP_NUMBER, nullable=False),
    sa.Column('seen_at', UTCDateTime(), nullable=False),
    sa.UniqueConstraint('mailbox', 'folder', 'uidvalidity', 'uid', name='uq_sighting_place'),
)

checkpoint = sa.Table(
    'checkpoint',
    metadata,
    sa.Column('mailbox', sa.String(), primary_key=True, nullable=False),
    sa.Column('folder', sa.String(), primary_key=True, nullable=False),
    sa.Column('uidvalidity', IMAP_NUMBER, nullable=False),
    sa.Column('last_uid', IMAP_NUMBER, nullable=False, default=0),
    sa.Column('synced_at', UTCDateTime(), nullable=False),
    sa.Column('history_before', UTCDateTime(), nullable=True),
    sa.Column('server_uid', IMAP_NUMBER, nullable=False, default=0, server_default='0'),
)

skipped = sa.Table(
    'skipped',
    metadata,
    sa.Column('id', sa.Integer(), primary_key=True, nullable=False),
    sa.Column('mailbox', sa.String(), nullable=False),
    sa.Column('folder', sa.String(), nullable=False),
    sa.Column('uidvalidity', IMAP_NUMBER, nullable=False),
    sa.Column('uid', IMAP_NUMBER, nullable=False),
    sa.Column('message_id', sa.String(), nullable=True),
    sa.Column('reason', sa.String(), nullable=False),
    sa.Column('at', UTCDateTime(), nullable=False),
    sa.UniqueConstraint('mailbox', 'folder', 'uidvalidity', 'uid', name='uq_skipped_place'),
)

folderstate = sa.Table(
    'folderstate',
    metadata,
    sa.Column('mailbox', sa.String(), primary_key=True, nullable=False),
    sa.Column('folder', sa.String(), primary_key=True, nullable=False),
    sa.Column('ok', sa.Boolean(), nullable=False, default=True),
    sa.Column('error', sa.String(), nullable=False, default=''),
    sa.Column('last_ok_at', UTCDateTime(), nullable=True),
    sa.Column('failing_since', UTCDateTime(), nullable=True),
    sa.Column('owner', sa.String(), nullable=False, default=''),
)

attachment = sa.Table(
    'attachment',
    metadata,
    sa.Column('id', sa.Integer(), primary_key=True, nullable=False),
    sa.Column('message_pk', sa.Integer(), sa.ForeignKey('message.id'), nullable=False, index=True),
    sa.Column('filename', sa.String(), nullable=True),
    sa.Column('content_type', sa.String(), nullable=False, default='application/octet-stream'),
    sa.Column('size', sa.Integer(), nullable=False, default=0),
    sa.Column('sha256', sa.String(), nullable=False),
    sa.Column('stored', sa.Boolean(), nullable=False, default=True),
    sa.Column('inline', sa.Boolean(), nullable=False, default=False),
)

event = sa.Table(
    'event',
    metadata,
    sa.Column('id', sa.Integer(), primary_key=True, nullable=False),
    sa.Column('ticket_id', sa.Integer(), sa.ForeignKey('ticket.id'), nullable=True),
    sa.Column('at', UTCDateTime(), nullable=False, index=True),
    sa.Column('actor', sa.String(), nullable=False),
    sa.Column('action', sa.String(), nullable=False),
    sa.Column('detail', sa.String(), nullable=False, default='{}'),
    sa.Index('ix_event_ticket_at', 'ticket_id', 'at'),
    Index('ix_event_status_change', 'ticket_id', 'at', sqlite_where=sa.text("action IN ('merge', 'autoclose') OR detail LIKE '%status%'"), postgresql={'where': sa.text("action IN ('merge', 'autoclose') OR detail LIKE '%status%'")}),
)

quarantine = sa.Table(
    'quarantine',
    metadata,
    sa.Column('id', sa.Integer(), primary_key=True, nullable=False),
    sa.Column('mailbox', sa.String(), nullable=False),
    sa.Column('folder', sa.String(), nullable=False),
    sa.Column('uidvalidity', IMAP_NUMBER, nullable=False),
    sa.Column('uid', IMAP_NUMBER, nullable=False),
    sa.Column('message_id', sa.String(), nullable=True),
    sa.Column('reason', sa.String(), nullable=False),
    sa.Column('raw_sha256', sa.String(), sa.ForeignKey('rawmessage.sha256'), nullable=True),
    sa.Column('at', UTCDateTime(), nullable=False),
    sa.Column('arrived_at', UTCDateTime(), nullable=True),
    sa.Column('raw_path', sa.String(), nullable=True),
    sa.UniqueConstraint('mailbox', 'folder', 'uidvalidity', 'uid', name='uq_quarantine_place'),
)

outbox = sa.Table(
    'outbox',
    metadata,
    sa.Column('id', sa.Integer(), primary_key=True, nullable=False),
    sa.Column('ticket_id', sa.Integer(), sa.ForeignKey('ticket.id'), nullable=True, index=True),
    sa.Column('mailbox', sa.String(), nullable=False),
    sa.Column('kind', sa.String(), nullable=False),
    sa.Column('message_id', sa.String(), nullable=False, index=True, unique=True),
    sa.Column('sender', sa.String(), nullable=False),
    sa.Column('recipients', sa.String(), nullable=False, default='[]'),
    sa.Column('data', sa.LargeBinary(), nullable=False),
    sa.Column('status', sa.String(), nullable=False, default='queued'),
    sa.Column('attempts', sa.Integer(), nullable=False, default=0),
    sa.Column('next_attempt_at', UTCDateTime(), nullable=False),
    sa.Column('claimed_at', UTCDateTime(), nullable=True),
    sa.Column('last_error', sa.String(), nullable=False, default=''),
    sa.Column('created_at', UTCDateTime(), nullable=False),
    sa.Column('sent_at', UTCDateTime(), nullable=True),
    sa.Column('copy_status', sa.String(), nullable=False, default='none'),
    sa.Column('spec', sa.Text(), nullable=True),
    sa.Column('copy_claimed_at', UTCDateTime(), nullable=True),
    sa.Column('ack_key', sa.String(), nullable=True),
    sa.Column('ack_domain', sa.String(), nullable=True),
    sa.Index('ix_outbox_due', 'status', 'next_attempt_at'),
    sa.Index('ix_outbox_kind_created', 'kind', 'created_at'),
    sa.Index('ix_outbox_copy', 'copy_status', 'mailbox'),
    sa.Index('ix_outbox_ack_key', 'ack_key', 'created_at'),
    sa.Index('ix_outbox_ack_domain', 'ack_domain', 'created_at'),
)

duty = sa.Table(
    'duty',
    metadata,
    sa.Column('id', sa.Integer(), primary_key=True, nullable=False),
    sa.Column('ticket_id', sa.Integer(), sa.ForeignKey('ticket.id'), nullable=True, index=True),
    sa.Column('duty', sa.String(), nullable=False),
    sa.Column('key', sa.String(), nullable=False),
    sa.Column('at', UTCDateTime(), nullable=False),
    sa.UniqueConstraint('duty', 'key', name='uq_duty_once'),
)

csat = sa.Table(
    'csat',
    metadata,
    sa.Column('id', sa.Integer(), primary_key=True, nullable=False),
    sa.Column('ticket_id', sa.Integer(), sa.ForeignKey('ticket.id'), nullable=False, index=True),
    sa.Column('customer', sa.String(), nullable=False, index=True),
    sa.Column('token', sa.String(), nullable=False, index=True, unique=True),
    sa.Column('message_id', sa.String(), nullable=False),
    sa.Column('sent_at', UTCDateTime(), nullable=False),
    sa.Column('rating', sa.Integer(), nullable=True),
    sa.Column('label', sa.String(), nullable=True),
    sa.Column('comment', sa.String(), nullable=True),
    sa.Column('answered_at', UTCDateTime(), nullable=True),
    sa.Column('scored', sa.Boolean(), nullable=False, default=False, server_default=sa.false()),
)

ticket_field = sa.Table(
    'ticket_field',
    metadata,
    sa.Column('ticket_id', sa.Integer(), sa.ForeignKey('ticket.id'), primary_key=True, nullable=False),
    sa.Column('name', sa.String(), primary_key=True, nullable=False),
    sa.Column('value', sa.String(), nullable=False),
    sa.Column('set_at', UTCDateTime(), nullable=False),
    sa.Column('set_by', sa.String(), nullable=False, default=''),
    sa.Index('ix_ticket_field_name_value', 'name', 'value'),
)

api_token = sa.Table(
    'api_token',
    metadata,
    sa.Column('id', sa.Integer(), primary_key=True, nullable=False),
    sa.Column('agent', sa.String(), nullable=False, index=True),
    sa.Column('label', sa.String(), nullable=False, default=''),
    sa.Column('secret_hash', sa.String(), nullable=False, index=True, unique=True),
    sa.Column('created_at', UTCDateTime(), nullable=False),
    sa.Column('created_by', sa.String(), nullable=False),
    sa.Column('expires_at', UTCDateTime(), nullable=False),
    sa.Column('revoked_at', UTCDateTime(), nullable=True),
    sa.Column('revoked_by', sa.String(), nullable=True),
    sa.Column('last_used_at', UTCDateTime(), nullable=True),
)

lease = sa.Table(
    'lease',
    metadata,
    sa.Column('mailbox', sa.String(), primary_key=True, nullable=False),
    sa.Column('folder', sa.String(), primary_key=True, nullable=False),
    sa.Column('holder', sa.String(), nullable=False),
    sa.Column('expires_at', UTCDateTime(), nullable=False),
)

counter = sa.Table(
    'counter',
    metadata,
    sa.Column('name', sa.String(), primary_key=True, nullable=False),
    sa.Column('value', sa.BigInteger(), nullable=False),
)

writeback = sa.Table(
    'writeback',
    metadata,
    sa.Column('mailbox', sa.String(), primary_key=True, nullable=False),
    sa.Column('folder', sa.String(), primary_key=True, nullable=False),
    sa.Column('uidvalidity', IMAP_NUMBER, primary_key=True, nullable=False),
    sa.Column('uid', IMAP_NUMBER, primary_key=True, nullable=False),
    sa.Column('ticket_id', sa.Integer(), nullable=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('mode', sa.String(), nullable=False, default=''),
    sa.Column('overdue', sa.Boolean(), nullable=False, default=False),
    sa.Column('keywords', sa.String(), nullable=False, default='[]'),
    sa.Column('seen', sa.Boolean(), nullable=True),
    sa.Column('written_at', UTCDateTime(), nullable=False),
)

writeback_folder = sa.Table(
    'writeback_folder',
    metadata,
    sa.Column('mailbox', sa.String(), primary_key=True, nullable=False),
    sa.Column('folder', sa.String(), primary_key=True, nullable=False),
    sa.Column('keywords', sa.Boolean(), nullable=False, default=True),
    sa.Column('seen', sa.Boolean(), nullable=False, default=True),
    sa.Column('gmail', sa.Boolean(), nullable=False, default=False),
    sa.Column('checked_at', UTCDateTime(), nullable=False),
    sa.Column('stores', sa.BigInteger(), nullable=False, default=0),
    sa.Column('error', sa.String(), nullable=False, default=''),
)

report_rollup = sa.Table(
    'report_rollup',
    metadata,
    sa.Column('fingerprint', sa.String(), primary_key=True, nullable=False),
    sa.Column('kind', sa.String(), primary_key=True, nullable=False),
    sa.Column('day', UTCDateTime(), primary_key=True, nullable=False),
    sa.Column('data', sa.Text(), nullable=False),
    sa.Column('watermark', sa.BigInteger(), nullable=False),
    sa.Column('computed_at', UTCDateTime(), nullable=False),
)

report_ticket = sa.Table(
    'report_ticket',
    metadata,
    sa.Column('ticket_id', sa.Integer(), primary_key=True, nullable=False, autoincrement=False),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.Column('watermark', sa.BigInteger(), nullable=False),
    sa.Column('data', sa.Text(), nullable=False),
    sa.Column('computed_at', UTCDateTime(), nullable=False),
)

TICKET_NUMBER = sa.Sequence('ticket_number', metadata=metadata)
