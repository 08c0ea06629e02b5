"""The ticket store: engine, tables, migrations, and all the SQL, in SQLAlchemy Core."""
