"""Alembic environment for the geogate store (run by :func:`geogate.store.migrate.upgrade`).

The caller passes an open SQLAlchemy connection in ``config.attributes["connection"]``; no URL
is read from a file or the environment here.
"""

from __future__ import annotations

from alembic import context

from geogate.store.schema import metadata

connection = context.config.attributes.get("connection")
if connection is None:
    raise RuntimeError("geogate migrations run through geogate.store.migrate.upgrade()")
context.configure(connection=connection, target_metadata=metadata, render_as_batch=True)
with context.begin_transaction():
    context.run_migrations()
