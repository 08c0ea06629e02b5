"""initial schema

Revision ID: 0001
Revises:
Create Date: 2026-11-23 02:50:32.356504
"""

from alembic import op
import sqlalchemy as sa
import sqlmodel


revision = '0001'
down_revision = None
branch_labels = None
depends_on = None


def upgrade() -> None:
    op.create_table('checkpoint',
    sa.Column('mailbox', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('folder', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('uidvalidity', sa.Integer(), nullable=False),
    sa.Column('last_uid', sa.Integer(), nullable=False),
    sa.Column('synced_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('mailbox', 'folder')
    )
    op.create_table('customer',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('email', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('name', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('customer', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_customer_email'), ['email'], unique=True)

    op.create_table('rawmessage',
    sa.Column('sha256', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('size', sa.Integer(), nullable=False),
    sa.Column('data', sa.LargeBinary(), nullable=False),
    sa.PrimaryKeyConstraint('sha256')
    )
    op.create_table('ticket',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('ref', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('subject', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('status', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('priority', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('mailbox', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('requester', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('requester_name', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('assignee', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('tags', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('message_count', sa.Integer(), nullable=False),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('updated_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('first_response_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.Column('version', sa.Integer(), nullable=False),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('ticket', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_ticket_assignee'), ['assignee'], unique=False)
        batch_op.create_index(batch_op.f('ix_ticket_mailbox'), ['mailbox'], unique=False)
        batch_op.create_index(batch_op.f('ix_ticket_ref'), ['ref'], unique=True)
        batch_op.create_index(batch_op.f('ix_ticket_requester'), ['requester'], unique=False)

    op.create_table('event',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('ticket_id', sa.Integer(), nullable=True),
    sa.Column('at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.Column('actor', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('action', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('detail', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.ForeignKeyConstraint(['ticket_id'], ['ticket.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('event', schema=None) as batch_op:
        batch_op.create_index('ix_event_ticket_at', ['ticket_id', 'at'], unique=False)

    op.create_table('message',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('message_key', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('message_id', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('ticket_id', sa.Integer(), nullable=False),
    sa.Column('direction', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('kind', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('from_addr', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('from_name', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('to_addrs', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('cc_addrs', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('reply_to', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('date', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=True),
    sa.Column('subject', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('text', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('reply_text', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('html_only', sa.Boolean(), nullable=False),
    sa.Column('in_reply_to', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('references', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('auto', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('raw_sha256', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('size', sa.Integer(), nullable=False),
    sa.Column('created_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['raw_sha256'], ['rawmessage.sha256'], ),
    sa.ForeignKeyConstraint(['ticket_id'], ['ticket.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('message', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_message_message_id'), ['message_id'], unique=False)
        batch_op.create_index(batch_op.f('ix_message_message_key'), ['message_key'], unique=True)
        batch_op.create_index(batch_op.f('ix_message_ticket_id'), ['ticket_id'], unique=False)

    op.create_table('quarantine',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('mailbox', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('folder', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('uidvalidity', sa.Integer(), nullable=False),
    sa.Column('uid', sa.Integer(), nullable=False),
    sa.Column('message_id', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('reason', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('raw_sha256', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['raw_sha256'], ['rawmessage.sha256'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('mailbox', 'folder', 'uidvalidity', 'uid', name='uq_quarantine_place')
    )
    op.create_table('attachment',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('message_pk', sa.Integer(), nullable=False),
    sa.Column('filename', sqlmodel.sql.sqltypes.AutoString(), nullable=True),
    sa.Column('content_type', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('size', sa.Integer(), nullable=False),
    sa.Column('sha256', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('stored', sa.Boolean(), nullable=False),
    sa.Column('inline', sa.Boolean(), nullable=False),
    sa.ForeignKeyConstraint(['message_pk'], ['message.id'], ),
    sa.PrimaryKeyConstraint('id')
    )
    with op.batch_alter_table('attachment', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_attachment_message_pk'), ['message_pk'], unique=False)

    op.create_table('messageref',
    sa.Column('message_pk', sa.Integer(), nullable=False),
    sa.Column('ref', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.ForeignKeyConstraint(['message_pk'], ['message.id'], ),
    sa.PrimaryKeyConstraint('message_pk', 'ref')
    )
    with op.batch_alter_table('messageref', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_messageref_ref'), ['ref'], unique=False)

    op.create_table('sighting',
    sa.Column('id', sa.Integer(), nullable=False),
    sa.Column('message_pk', sa.Integer(), nullable=False),
    sa.Column('mailbox', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('folder', sqlmodel.sql.sqltypes.AutoString(), nullable=False),
    sa.Column('uidvalidity', sa.Integer(), nullable=False),
    sa.Column('uid', sa.Integer(), nullable=False),
    sa.Column('seen_at', sqlmodel.sql.sqltypes.UTCDateTime(), nullable=False),
    sa.ForeignKeyConstraint(['message_pk'], ['message.id'], ),
    sa.PrimaryKeyConstraint('id'),
    sa.UniqueConstraint('mailbox', 'folder', 'uidvalidity', 'uid', name='uq_sighting_place')
    )
    with op.batch_alter_table('sighting', schema=None) as batch_op:
        batch_op.create_index(batch_op.f('ix_sighting_message_pk'), ['message_pk'], unique=False)



def downgrade() -> None:
    with op.batch_alter_table('sighting', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_sighting_message_pk'))

    op.drop_table('sighting')
    with op.batch_alter_table('messageref', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_messageref_ref'))

    op.drop_table('messageref')
    with op.batch_alter_table('attachment', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_attachment_message_pk'))

    op.drop_table('attachment')
    op.drop_table('quarantine')
    with op.batch_alter_table('message', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_message_ticket_id'))
        batch_op.drop_index(batch_op.f('ix_message_message_key'))
        batch_op.drop_index(batch_op.f('ix_message_message_id'))

    op.drop_table('message')
    with op.batch_alter_table('event', schema=None) as batch_op:
        batch_op.drop_index('ix_event_ticket_at')

    op.drop_table('event')
    with op.batch_alter_table('ticket', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_ticket_requester'))
        batch_op.drop_index(batch_op.f('ix_ticket_ref'))
        batch_op.drop_index(batch_op.f('ix_ticket_mailbox'))
        batch_op.drop_index(batch_op.f('ix_ticket_assignee'))

    op.drop_table('ticket')
    op.drop_table('rawmessage')
    with op.batch_alter_table('customer', schema=None) as batch_op:
        batch_op.drop_index(batch_op.f('ix_customer_email'))

    op.drop_table('customer')
    op.drop_table('checkpoint')
