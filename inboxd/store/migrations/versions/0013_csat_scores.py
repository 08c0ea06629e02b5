"""Satisfaction ratings become scores, higher is better: rating n (1 = best) -> 6 - n; csat.scored

Revision ID: 0013
Revises: 0012
Create Date: 2026-11-30 14:00:00

Before this revision a rating was the position on a best-first scale, and
the default scale was 1 非常满意 / 2 满意 / 3 一般 / 4 不满意.  Since then it
is the score of the team's feedback sheet: 5 非常满意 / 4 满意 / 3 一般 /
2 不满意.  Stored ratings are converted with score = 6 - n, in the csat table
and in the history's "csat" and "csat-followup" events, so that the history
and `show --json` say the same.  Labels, comments and times are kept as they
were (a label is the text the customer was shown).

``csat.scored`` tells surveys sent from now on (true) from those sent before
(false): the links of an old survey still carry the position, so an answer
to one is read with the same 6 - n (inboxd.desk.csat.legacy_score).

Downgrading converts back (6 - score is its own inverse).
"""

import json

from alembic import op
import sqlalchemy as sa


revision = '0013'
down_revision = '0012'
branch_labels = None
depends_on = None

# Position n of the old best-first scale scores LEGACY_BASE - n (inboxd.desk.csat.LEGACY_BASE).
LEGACY_BASE = 6


def upgrade() -> None:
    with op.batch_alter_table('csat', schema=None) as batch_op:
        batch_op.add_column(sa.Column('scored', sa.Boolean(), server_default=sa.false(), nullable=False))
    _convert()


def downgrade() -> None:
    _convert()
    with op.batch_alter_table('csat', schema=None) as batch_op:
        batch_op.drop_column('scored')


def _convert() -> None:
    """rating -> 6 - rating, in the csat table and in the history's rating events."""
    op.execute(sa.text(f"UPDATE csat SET rating = {LEGACY_BASE} - rating WHERE rating IS NOT NULL"))
    bind = op.get_bind()
    event = sa.table('event', sa.column('id', sa.Integer), sa.column('action', sa.String),
                     sa.column('detail', sa.Text))
    rows = bind.execute(sa.select(event.c.id, event.c.detail)
                        .where(event.c.action.in_(('csat', 'csat-followup')))).all()
    for pk, detail in rows:
        parsed = json.loads(detail or '{}')
        if isinstance(parsed.get('rating'), int):
            parsed['rating'] = LEGACY_BASE - parsed['rating']
            bind.execute(sa.update(event).where(event.c.id == pk)
                         .values(detail=json.dumps(parsed, ensure_ascii=False)))
